// Optimizer factory and learning-rate schedules, checked against libtorch's optimizers and
// closed forms computed here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "dptrain/core/error.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "dptrain/trainers/optim/optim.h"
#include "dptrain/trainers/optim/weight_decay_groups.h"

namespace {

// One step of `optimizer` on the quadratic sum(w^2); returns the new weights.
torch::Tensor step_once(torch::optim::Optimizer& optimizer, torch::Tensor w) {
  optimizer.zero_grad();
  (w * w).sum().backward();
  optimizer.step();
  return w.detach().clone();
}

}  // namespace

TEST(TrainerOptim, FactoryBuildsTheNamedOptimizerWithItsOptions) {
  for (std::string name : {"sgd", "adam", "adamw"}) {
    auto w1 = torch::tensor({1.0, -2.0}, torch::requires_grad());
    auto w2 = torch::tensor({1.0, -2.0}, torch::requires_grad());
    auto ours = dpt::make_optimizer({w1}, dpt::OptimizerOptions().name(name).lr(0.1).momentum(name == "sgd" ? 0.9 : 0).weight_decay(0.01));
    std::unique_ptr<torch::optim::Optimizer> reference;
    if (name == "sgd") reference = std::make_unique<torch::optim::SGD>(std::vector<torch::Tensor>{w2}, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.01));
    if (name == "adam") reference = std::make_unique<torch::optim::Adam>(std::vector<torch::Tensor>{w2}, torch::optim::AdamOptions(0.1).weight_decay(0.01));
    if (name == "adamw") reference = std::make_unique<torch::optim::AdamW>(std::vector<torch::Tensor>{w2}, torch::optim::AdamWOptions(0.1).weight_decay(0.01));
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(step_once(*ours, w1), step_once(*reference, w2))) << name;
  }
}

// dptrain's SGD steps every parameter of a group with multi-tensor kernels; it must match
// libtorch's per-parameter SGD bit for bit, with and without momentum, dampening, weight decay,
// Nesterov, and with a parameter that has no gradient.
TEST(TrainerOptim, SgdMatchesLibtorchBitForBit) {
  struct Case {
    double momentum, dampening, weight_decay;
    bool nesterov;
  };
  for (const Case& c : {Case{0, 0, 0, false}, Case{0.9, 0, 0.01, false}, Case{0.9, 0, 0, true}, Case{0.8, 0.3, 0.1, false}}) {
    torch::manual_seed(3);
    std::vector<torch::Tensor> ours, theirs;
    for (int64_t n : {5, 17, 1}) {
      auto w = torch::randn({n}, torch::kDouble);
      ours.push_back(w.clone().requires_grad_());
      theirs.push_back(w.clone().requires_grad_());
    }
    auto dpt_sgd = dpt::make_optimizer(ours, dpt::OptimizerOptions()
                                                 .name("sgd")
                                                 .lr(0.05)
                                                 .momentum(c.momentum)
                                                 .weight_decay(c.weight_decay)
                                                 .nesterov(c.nesterov));
    if (c.dampening != 0) {
      static_cast<torch::optim::SGDOptions&>(dpt_sgd->param_groups()[0].options()).dampening(c.dampening);
    }
    torch::optim::SGD reference(theirs, torch::optim::SGDOptions(0.05)
                                            .momentum(c.momentum)
                                            .dampening(c.dampening)
                                            .weight_decay(c.weight_decay)
                                            .nesterov(c.nesterov));
    for (int step = 0; step < 4; ++step) {
      dpt_sgd->zero_grad();
      reference.zero_grad();
      ((ours[0] * ours[0]).sum() + ours[1].sin().sum() + (step % 2 ? ours[2].sum() * 0 : torch::zeros({}))).backward();
      ((theirs[0] * theirs[0]).sum() + theirs[1].sin().sum() + (step % 2 ? theirs[2].sum() * 0 : torch::zeros({})))
          .backward();
      dpt_sgd->step();
      reference.step();
      for (size_t i = 0; i < ours.size(); ++i) {
        EXPECT_TRUE(torch::equal(ours[i], theirs[i])) << "parameter " << i << " step " << step << " momentum "
                                                      << c.momentum << " nesterov " << c.nesterov;
      }
    }
  }
}

TEST(TrainerOptim, BadOptionsNameTheParameter) {
  auto expect_error = [](const dpt::OptimizerOptions& options, const std::string& needle) {
    try {
      dpt::validate(options);
      FAIL() << needle << " accepted";
    } catch (const dpt::InvalidArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(dpt::OptimizerOptions().name("lbfgs"), "--optimizer");
  expect_error(dpt::OptimizerOptions().lr(-0.1), "--lr");
  expect_error(dpt::OptimizerOptions().lr(NAN), "--lr");
  expect_error(dpt::OptimizerOptions().momentum(1.5), "--momentum");
  expect_error(dpt::OptimizerOptions().weight_decay(-1), "--weight-decay");
}

TEST(TrainerOptim, SetLearningRateChangesEveryGroup) {
  auto w = torch::zeros({2}, torch::requires_grad());
  auto optimizer = dpt::make_optimizer({w}, dpt::OptimizerOptions().lr(0.5));
  dpt::set_learning_rate(*optimizer, 0.25);
  EXPECT_DOUBLE_EQ(optimizer->param_groups()[0].options().get_lr(), 0.25);
}

// Two groups (decayed, exempt) step each parameter as an optimizer of its own with that group's
// weight decay would.
TEST(TrainerOptim, ExemptParametersStepWithoutWeightDecay) {
  // A loss whose gradient is not proportional to w, so that Adam's update sees the decay too.
  auto loss_of = [](const torch::Tensor& w) { return (w - 1.0).pow(2).sum(); };
  auto step = [&](torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& ws) {
    optimizer.zero_grad();
    torch::Tensor loss = torch::zeros({});
    for (const auto& w : ws) loss = loss + loss_of(w);
    loss.backward();
    optimizer.step();
  };
  for (std::string name : {"sgd", "adam", "adamw"}) {
    auto decayed = torch::tensor({3.0, -2.0}, torch::requires_grad());
    auto exempt = torch::tensor({3.0, 0.5}, torch::requires_grad());
    auto copy = [](const torch::Tensor& w) { return w.detach().clone().requires_grad_(); };
    auto ref_decayed = copy(decayed), ref_exempt = copy(exempt), exempt_if_decayed = copy(exempt);
    const auto options = dpt::OptimizerOptions().name(name).lr(0.1).momentum(name == "sgd" ? 0.9 : 0).weight_decay(0.5);
    auto ours = dpt::make_optimizer({exempt, decayed}, options, {false, true});
    ASSERT_EQ(ours->param_groups().size(), 2u);
    auto with = dpt::make_optimizer({ref_decayed}, options);
    auto without = dpt::make_optimizer({ref_exempt}, dpt::OptimizerOptions(options).weight_decay(0.0));
    auto control = dpt::make_optimizer({exempt_if_decayed}, options);
    for (int i = 0; i < 3; ++i) {
      step(*ours, {exempt, decayed});
      step(*with, {ref_decayed});
      step(*without, {ref_exempt});
      step(*control, {exempt_if_decayed});
      EXPECT_TRUE(torch::allclose(decayed, ref_decayed)) << name;
      EXPECT_TRUE(torch::allclose(exempt, ref_exempt)) << name;
    }
    EXPECT_FALSE(torch::allclose(exempt, exempt_if_decayed)) << name << ": the decay must matter for the test to mean anything";
  }
}

std::vector<std::string> excluded_names(const dpt::Model& model, const std::vector<std::string>& words) {
  const auto decays = dpt::weight_decay_mask(model, words);
  std::vector<std::string> out;
  const auto params = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!decays.at(i)) out.push_back(params[i].first);
  }
  return out;
}

// The built-in GPT is TorchScript whose embeddings are plain parameters read by torch.embedding:
// found from its graphs, not its names.
TEST(TrainerOptim, WeightDecayExclusionFindsTheGptsBiasesNormsAndEmbeddings) {
  dpt::ModelZooOptions options;
  options.num_classes = 50, options.context = 8, options.gpt_layers = 1, options.gpt_dim = 16, options.gpt_heads = 2;
  dpt::Model gpt(dpt::make_builtin_model("gpt", options));
  EXPECT_EQ(excluded_names(gpt, {"embedding"}), (std::vector<std::string>{"wte_weight", "wpe_weight"}));
  for (const auto& name : excluded_names(gpt, {"bias"})) EXPECT_NE(name.find("_bias"), std::string::npos) << name;
  for (const auto& name : excluded_names(gpt, {"norm"})) EXPECT_NE(name.find("ln_"), std::string::npos) << name;
  EXPECT_EQ(excluded_names(gpt, {"norm"}).size(), 3u);  // ln_1, ln_2 of the block, ln_f
  for (const auto& [name, p] : gpt.named_parameters()) {
    const auto all = excluded_names(gpt, {"bias", "norm", "embedding"});
    const bool exempt = std::find(all.begin(), all.end(), name) != all.end();
    EXPECT_EQ(exempt, p.dim() != 2 || name.rfind("wte", 0) == 0 || name.rfind("wpe", 0) == 0) << name;
  }
  EXPECT_TRUE(dpt::weight_decay_mask(gpt, {}).empty());
}

TEST(TrainerOptim, WeightDecayExclusionOfCppModulesAndPatterns) {
  torch::nn::Sequential net(torch::nn::Embedding(10, 4), torch::nn::LayerNorm(torch::nn::LayerNormOptions({4})),
                            torch::nn::Linear(4, 3));
  dpt::Model model(net);
  EXPECT_EQ(excluded_names(model, {"embedding"}), (std::vector<std::string>{"0.weight"}));
  EXPECT_EQ(excluded_names(model, {"norm"}), (std::vector<std::string>{"1.weight"}));
  EXPECT_EQ(excluded_names(model, {"bias"}), (std::vector<std::string>{"1.bias", "2.bias"}));
  EXPECT_EQ(excluded_names(model, {"2.*"}), (std::vector<std::string>{"2.weight", "2.bias"}));
  EXPECT_THROW(dpt::weight_decay_mask(model, {"biases"}), dpt::InvalidArgumentError);  // selects nothing
}

TEST(TrainerSchedule, ConstantStepAndCosineFollowTheirFormulas) {
  dpt::LrSchedule constant(dpt::LrScheduleOptions(), 0.1, 100);
  EXPECT_DOUBLE_EQ(constant.lr_at(0), 0.1);
  EXPECT_DOUBLE_EQ(constant.lr_at(99), 0.1);

  dpt::LrSchedule step(dpt::LrScheduleOptions().kind("step").step_size(10).gamma(0.5), 0.1, 100);
  EXPECT_DOUBLE_EQ(step.lr_at(9), 0.1);
  EXPECT_DOUBLE_EQ(step.lr_at(10), 0.05);
  EXPECT_DOUBLE_EQ(step.lr_at(25), 0.025);

  dpt::LrSchedule cosine(dpt::LrScheduleOptions().kind("cosine").min_lr(0.01), 0.1, 100);
  EXPECT_DOUBLE_EQ(cosine.lr_at(0), 0.1);
  EXPECT_NEAR(cosine.lr_at(50), 0.01 + 0.09 * 0.5 * (1 + std::cos(M_PI * 0.5)), 1e-12);
  EXPECT_NEAR(cosine.lr_at(100), 0.01, 1e-12);
  EXPECT_NEAR(cosine.lr_at(1000), 0.01, 1e-12);  // past the plan: stays at min_lr
}

TEST(TrainerSchedule, LinearWarmupRampsToTheScheduleValue) {
  dpt::LrSchedule warm(dpt::LrScheduleOptions().kind("cosine").warmup_steps(10).warmup_start_factor(0.1), 1.0, 110);
  EXPECT_NEAR(warm.lr_at(0), 0.1, 1e-12);
  EXPECT_NEAR(warm.lr_at(5), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(warm.lr_at(10), 1.0, 1e-12);  // cosine starts after warmup
  EXPECT_NEAR(warm.lr_at(60), 0.5, 1e-12);
  for (int64_t s = 1; s < 10; ++s) EXPECT_GT(warm.lr_at(s), warm.lr_at(s - 1));
}

TEST(TrainerSchedule, RejectsUnknownKinds) {
  EXPECT_THROW(dpt::LrSchedule(dpt::LrScheduleOptions().kind("exp"), 0.1, 10), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::LrSchedule(dpt::LrScheduleOptions().warmup_steps(-1), 0.1, 10), dpt::InvalidArgumentError);
}
