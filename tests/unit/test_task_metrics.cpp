// Label smoothing and top-k accuracy (issue 33): the Task's evaluation sums against the formulas
// PyTorch documents, computed here from the log-probabilities and the scores themselves.
#include <gtest/gtest.h>

#include "dptrain/core/model.h"
#include "dptrain/trainers/loop/trainer.h"
#include "loop/task.h"

namespace dpt {
namespace {

struct ScoredBatch {
  Model model{torch::nn::Linear(6, 7)};
  torch::Tensor x, y;
  ScoredBatch() {
    torch::manual_seed(3);
    model = Model(torch::nn::Linear(6, 7));
    x = torch::randn({40, 6});
    y = torch::randint(0, 7, {40}, torch::kLong);
  }
};

double sum_named(const std::vector<std::pair<std::string, torch::Tensor>>& sums, const std::string& name) {
  for (const auto& [key, value] : sums) {
    if (key == name) return value.item<double>();
  }
  ADD_FAILURE() << "no sum named " << name;
  return 0;
}

TEST(TaskMetrics, LabelSmoothingIsPyTorchsFormula) {
  ScoredBatch batch;
  const double epsilon = 0.2;
  Task task = Task::of(batch.model, TrainerOptions().label_smoothing(epsilon));
  const auto sums = task.evaluation_sums(batch.model, Tensors(batch.x), Tensors(batch.y)).sums;
  // (1 - e) * -log p[y] + e * mean over classes of -log p[c], summed over the samples.
  torch::NoGradGuard no_grad;
  const auto log_p = torch::log_softmax(batch.model.forward(batch.x).to(torch::kDouble), 1);
  const auto nll = -log_p.gather(1, batch.y.unsqueeze(1)).squeeze(1);
  const auto uniform = -log_p.mean(1);
  const double expected = ((1 - epsilon) * nll + epsilon * uniform).sum().item<double>();
  EXPECT_NEAR(sum_named(sums, "loss"), expected, 1e-4 * std::abs(expected));
  // And it is not the plain loss.
  Task plain = Task::of(batch.model, TrainerOptions());
  EXPECT_GT(std::abs(sum_named(plain.evaluation_sums(batch.model, Tensors(batch.x), Tensors(batch.y)).sums, "loss") -
                     expected),
            1e-3);
}

TEST(TaskMetrics, TopKCountsLabelsAmongTheKHighestScores) {
  ScoredBatch batch;
  for (int64_t k : {2, 3, 7, 50}) {
    Task task = Task::of(batch.model, TrainerOptions().top_k(k));
    const auto sums = task.evaluation_sums(batch.model, Tensors(batch.x), Tensors(batch.y)).sums;
    torch::NoGradGuard no_grad;
    const auto scores = batch.model.forward(batch.x);
    int64_t expected = 0;
    for (int64_t i = 0; i < scores.size(0); ++i) {
      const double mine = scores[i][batch.y[i].item<int64_t>()].item<double>();
      const int64_t higher = scores[i].gt(mine).sum().item<int64_t>();
      if (higher < k) ++expected;
    }
    EXPECT_EQ(sum_named(sums, "correct_top_k"), static_cast<double>(expected)) << "k " << k;
    if (k >= 7) {
      EXPECT_EQ(expected, scores.size(0)) << "every label is among all the classes";
    }
  }
  Task off = Task::of(batch.model, TrainerOptions());
  for (const auto& [name, value] : off.evaluation_sums(batch.model, Tensors(batch.x), Tensors(batch.y)).sums) {
    EXPECT_NE(name, "correct_top_k");
  }
}

}  // namespace
}  // namespace dpt
