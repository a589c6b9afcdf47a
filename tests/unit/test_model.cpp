#include <gtest/gtest.h>

#include "dptrain/core/error.h"
#include "dptrain/core/model.h"
#include "test_support.h"

namespace {

torch::nn::Sequential small_mlp() {
  return torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::ReLU(), torch::nn::Linear(8, 3));
}

}  // namespace

TEST(Model, CppModuleForwardMatchesTheModule) {
  torch::manual_seed(0);
  auto net = small_mlp();
  dpt::Model model(net);
  auto x = torch::randn({5, 4});
  EXPECT_TRUE(torch::equal(model.forward(x), net->forward(x)));
  EXPECT_EQ(model.named_parameters().size(), 4u);
  EXPECT_EQ(model.named_parameters()[0].first, "0.weight");
}

TEST(Model, CloneIsADeepCopy) {
  dpt::Model model(small_mlp());
  auto copy = model.clone(torch::kCPU);
  {
    torch::NoGradGuard no_grad;
    model.parameters()[0].fill_(1.0);
  }
  EXPECT_FALSE(torch::equal(copy.parameters()[0], model.parameters()[0]));
}

TEST(Model, TorchScriptCloneHasIndependentLeafParameters) {
  torch::jit::Module script("Net");
  script.register_parameter("weight", torch::randn({4, 3}).requires_grad_(), /*is_buffer=*/false);
  script.define("def forward(self, x):\n    return x.mm(self.weight)\n");
  dpt::Model model(script);
  auto copy = model.clone(torch::kCPU);
  ASSERT_EQ(model.parameters().size(), 1u);
  ASSERT_EQ(copy.parameters().size(), 1u);
  const auto original_weight = model.parameters()[0];
  const auto copied_weight = copy.parameters()[0];
  EXPECT_TRUE(torch::equal(copied_weight, original_weight));
  EXPECT_NE(copied_weight.data_ptr(), original_weight.data_ptr());
  // The copy must be a leaf that collects its own gradient, not a view into the original's graph.
  EXPECT_TRUE(copied_weight.is_leaf());
  EXPECT_TRUE(copied_weight.requires_grad());
  copy.forward(torch::ones({2, 4})).sum().backward();
  ASSERT_TRUE(copied_weight.grad().defined());
  EXPECT_TRUE(torch::equal(copied_weight.grad(), torch::full({4, 3}, 2.0)));
  EXPECT_FALSE(original_weight.grad().defined());
}

TEST(Model, StateDictRoundTripsAndNamesShapeMismatches) {
  torch::manual_seed(1);
  dpt::Model a(small_mlp());
  torch::manual_seed(2);
  dpt::Model b(small_mlp());
  b.load_state_dict(a.state_dict());
  for (size_t i = 0; i < a.parameters().size(); ++i) EXPECT_TRUE(torch::equal(a.parameters()[i], b.parameters()[i]));

  dpt::Model other(torch::nn::Sequential(torch::nn::Linear(4, 9), torch::nn::ReLU(), torch::nn::Linear(9, 3)));
  try {
    other.load_state_dict(a.state_dict());
    FAIL() << "shape mismatch accepted";
  } catch (const dpt::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("0.weight"), std::string::npos) << e.what();
  }
}

TEST(Model, NotATorchScriptFileIsAClearError) {
  dpt::testing::TempDir dir;
  dpt::write_file_atomic(dir.file("junk.pt"), dpt::Bytes{'n', 'o', 'p', 'e'});
  try {
    dpt::Model::load_torchscript(dir.file("junk.pt"));
    FAIL() << "junk accepted";
  } catch (const dpt::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("junk.pt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dpt::Model::load_torchscript(dir.file("missing.pt")), dpt::IoError);
}

// Note [TorchScript training runs the unoptimized plan]: a scripted model's training forward
// records eager autograd nodes, one per op, so its parameters get their gradients one by one during
// backward (what lets DDP's buckets overlap it) - also after the executor has built its optimized
// plan in evaluation. Evaluation with grad enabled still gets that plan: one DifferentiableGraph
// node for the whole region, which shows what the training forward avoids.
TEST(Model, TorchScriptTrainingForwardRecordsEagerAutograd) {
  torch::jit::Module script("Net");
  script.register_attribute("training", c10::BoolType::get(), true);  // what train()/eval() set
  script.register_parameter("w1", torch::randn({4, 8}).requires_grad_(), /*is_buffer=*/false);
  script.register_parameter("b1", torch::randn({8}).requires_grad_(), /*is_buffer=*/false);
  script.register_parameter("w2", torch::randn({8, 3}).requires_grad_(), /*is_buffer=*/false);
  script.define(R"(
def forward(self, x):
    h = torch.relu(x.mm(self.w1) + self.b1)
    return torch.tanh(h * 2.0 + 1.0).mm(self.w2) * 0.5
)");
  dpt::Model model(script);
  auto x = torch::randn({5, 4});
  model.eval();
  torch::Tensor evaluated;
  for (int run = 0; run < 20; ++run) evaluated = model.forward(x);  // past the profiling runs
  ASSERT_TRUE(evaluated.grad_fn());
  EXPECT_NE(evaluated.grad_fn()->name().find("DifferentiableGraph"), std::string::npos)
      << "evaluation should keep the optimized plan; got " << evaluated.grad_fn()->name();

  model.train();
  for (int run = 0; run < 20; ++run) {
    auto out = model.forward(x);
    ASSERT_TRUE(out.grad_fn());
    EXPECT_EQ(out.grad_fn()->name().find("DifferentiableGraph"), std::string::npos) << out.grad_fn()->name();
    EXPECT_TRUE(torch::allclose(out, evaluated));
  }
}
