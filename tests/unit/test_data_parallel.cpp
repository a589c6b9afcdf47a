// DataParallel on CPU device lists ({cpu, cpu, cpu}): the same code path as on GPUs (scatter, one
// thread per replica, gradient links to the original, gather), checked against the unwrapped
// module on the full batch.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "dptrain/core/error.h"
#include "dptrain/core/model.h"
#include "dptrain/parallel/data_parallel/data_parallel.h"
#include "test_support.h"

namespace {

using dpt::testing::max_relative_error;
constexpr double kTolerance = 1e-5;

using dpt::testing::cpus;
torch::nn::Sequential mlp() {
  return torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(), torch::nn::Linear(16, 4));
}

torch::nn::Sequential cnn() {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)), torch::nn::ReLU(),
                               torch::nn::MaxPool2d(2), torch::nn::Flatten(), torch::nn::Linear(4 * 4 * 4, 5));
}

// Every trainable parameter of `actual` has the gradient of the same parameter of `expected`.
void expect_same_gradients(const dpt::Model& actual, const dpt::Model& expected) {
  auto got = actual.named_parameters();
  auto want = expected.named_parameters();
  ASSERT_EQ(got.size(), want.size());
  ASSERT_FALSE(got.empty());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(want[i].second.grad().defined()) << want[i].first;
    ASSERT_TRUE(got[i].second.grad().defined()) << "no gradient reached the original's " << got[i].first;
    EXPECT_GT(want[i].second.grad().abs().sum().item<double>(), 0.0) << want[i].first;
    EXPECT_LT(max_relative_error(got[i].second.grad(), want[i].second.grad()), kTolerance) << got[i].first;
  }
}

// Forward + backward of a weighted sum through DataParallel vs. the unwrapped module (a deep copy
// with the same weights) on the full batch.
void expect_equivalent(dpt::Model model, const std::vector<torch::Device>& devices, const torch::Tensor& input,
                       size_t expected_replicas) {
  auto reference = model.clone(torch::kCPU);
  dpt::DataParallel dp(model, devices);
  auto output = dp.forward(input);
  auto expected = reference.forward(input);
  EXPECT_EQ(dp.last_replica_count(), expected_replicas);
  ASSERT_EQ(output.sizes(), expected.sizes());
  EXPECT_LT(max_relative_error(output, expected), kTolerance);
  auto weights = torch::randn_like(expected);
  (output * weights).sum().backward();
  (expected * weights).sum().backward();
  expect_same_gradients(model, reference);
}

TEST(DataParallel, MlpMatchesTheUnwrappedModuleWithUnevenSplits) {
  torch::manual_seed(0);
  expect_equivalent(dpt::Model(mlp()), cpus(3), torch::randn({10, 6}), 3);  // 4 + 4 + 2 rows
  expect_equivalent(dpt::Model(mlp()), cpus(2), torch::randn({9, 6}), 2);   // 5 + 4
  expect_equivalent(dpt::Model(mlp()), cpus(4), torch::randn({5, 6}), 3);   // 2 + 2 + 1, as torch.chunk
}

TEST(DataParallel, BatchSmallerThanTheDeviceCountUsesFewerReplicas) {
  torch::manual_seed(1);
  expect_equivalent(dpt::Model(mlp()), cpus(4), torch::randn({2, 6}), 2);
  expect_equivalent(dpt::Model(mlp()), cpus(3), torch::randn({1, 6}), 1);
}

TEST(DataParallel, CnnMatchesTheUnwrappedModule) {
  torch::manual_seed(2);
  expect_equivalent(dpt::Model(cnn()), cpus(3), torch::randn({7, 2, 8, 8}), 3);
}

// forward(x, (a, b), [c], scale) -> (h, [y]): nested scatter of tuples and lists, a float given
// whole to every replica, a buffer, and a nested output.
torch::jit::Module script_module() {
  torch::jit::Module module("TwoHeads");
  module.register_parameter("w", torch::randn({6, 5}).requires_grad_(), false);
  module.register_parameter("b", torch::randn({5}).requires_grad_(), false);
  module.register_buffer("shift", torch::randn({5}));
  module.define(R"JIT(
def forward(self, x, pair: Tuple[Tensor, Tensor], extra: List[Tensor], scale: float):
    h = torch.tanh(x.mm(self.w) + self.b + self.shift)
    y = pair[0] * h.sum(1, keepdim=True) + pair[1] * extra[0] * scale
    return (h, [y])
)JIT");
  return module;
}

TEST(DataParallel, TorchScriptModuleWithNestedInputsAndOutputs) {
  torch::manual_seed(3);
  dpt::Model model(script_module());
  // A reference copy (not Model::clone, whose TorchScript copy on the same device shares tensors).
  torch::jit::Module reference_module = [&] {
    torch::NoGradGuard no_grad;
    return model.torchscript().deepcopy();
  }();
  for (const auto& item : reference_module.named_parameters()) item.value.requires_grad_(true);
  dpt::Model reference(reference_module);
  dpt::DataParallel dp(model, cpus(3));
  const int64_t batch = 8;
  auto x = torch::randn({batch, 6});
  auto a = torch::randn({batch, 1});
  auto b = torch::randn({batch, 5});
  auto c = torch::randn({batch, 5});
  auto inputs = [&] {
    return std::vector<c10::IValue>{x, c10::ivalue::Tuple::create({a, b}), c10::List<torch::Tensor>({c}), 0.5};
  };
  auto output = dp.forward(inputs()).toTupleRef().elements();
  auto expected = reference.forward(inputs()).toTupleRef().elements();
  EXPECT_EQ(dp.last_replica_count(), 3u);
  auto h = output[0].toTensor();
  auto y = output[1].toTensorList().get(0);
  auto h_ref = expected[0].toTensor();
  auto y_ref = expected[1].toTensorList().get(0);
  ASSERT_EQ(h.sizes(), h_ref.sizes());
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  EXPECT_LT(max_relative_error(h, h_ref), kTolerance);
  EXPECT_LT(max_relative_error(y, y_ref), kTolerance);
  ASSERT_EQ(model.named_parameters().size(), 2u);
  ASSERT_EQ(reference.named_parameters().size(), 2u);
  ASSERT_TRUE(y_ref.requires_grad());
  ASSERT_TRUE(y.requires_grad());
  auto weights = torch::randn_like(y_ref);
  ((y * weights).sum() + h.square().sum()).backward();
  ((y_ref * weights).sum() + h_ref.square().sum()).backward();
  expect_same_gradients(model, reference);
}

// The same optimizer steps with and without DataParallel; the optimizer is built on the original.
template <typename MakeOptimizer>
void expect_same_training(MakeOptimizer make_optimizer) {
  torch::manual_seed(4);
  dpt::Model model(mlp());
  auto reference = model.clone(torch::kCPU);
  dpt::DataParallel dp(model, cpus(3));
  auto optimizer = make_optimizer(model.parameters());
  auto reference_optimizer = make_optimizer(reference.parameters());
  for (int step = 0; step < 5; ++step) {
    auto input = torch::randn({11, 6});
    auto target = torch::randn({11, 4});
    optimizer->zero_grad();
    torch::mse_loss(dp.forward(input), target).backward();
    optimizer->step();
    reference_optimizer->zero_grad();
    torch::mse_loss(reference.forward(input), target).backward();
    reference_optimizer->step();
  }
  auto got = model.named_parameters();
  auto want = reference.named_parameters();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LT(max_relative_error(got[i].second, want[i].second), kTolerance) << got[i].first;
  }
  // The replicas were refreshed after every step: a forward still matches.
  auto input = torch::randn({7, 6});
  EXPECT_LT(max_relative_error(dp.forward(input), reference.forward(input)), kTolerance);
}

TEST(DataParallel, OptimizerStepsEqualTheUnwrappedTraining) {
  expect_same_training([](std::vector<torch::Tensor> parameters) {
    return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(0.1).momentum(0.9));
  });
  expect_same_training([](std::vector<torch::Tensor> parameters) {
    return std::make_unique<torch::optim::Adam>(parameters, torch::optim::AdamOptions(0.01));
  });
}

TEST(DataParallel, TwoForwardsThenOneBackward) {
  torch::manual_seed(5);
  dpt::Model model(mlp());
  auto reference = model.clone(torch::kCPU);
  dpt::DataParallel dp(model, cpus(2));
  auto x1 = torch::randn({6, 6});
  auto x2 = torch::randn({5, 6});
  (dp.forward(x1).sum() + dp.forward(x2).square().sum()).backward();
  (reference.forward(x1).sum() + reference.forward(x2).square().sum()).backward();
  expect_same_gradients(model, reference);
}

// torch::autograd::grad with respect to the originals, and a second derivative through the
// gradient sum (a gradient penalty), as without DataParallel.
TEST(DataParallel, AutogradGradAndDoubleBackwardReachTheOriginals) {
  torch::manual_seed(9);
  dpt::Model model(mlp());
  auto reference = model.clone(torch::kCPU);
  dpt::DataParallel dp(model, cpus(3));
  auto input = torch::randn({8, 6});
  auto penalty = [](torch::Tensor output, const std::vector<torch::Tensor>& parameters) {
    auto grads = torch::autograd::grad({output.square().sum()}, parameters, {}, /*retain_graph=*/true,
                                       /*create_graph=*/true);
    torch::Tensor sum = torch::zeros({});
    for (auto& grad : grads) sum = sum + grad.square().sum();
    return sum;
  };
  auto got = penalty(dp.forward(input), model.parameters());
  auto want = penalty(reference.forward(input), reference.parameters());
  EXPECT_LT(max_relative_error(got, want), kTolerance);
  got.backward();
  want.backward();
  expect_same_gradients(model, reference);
}

TEST(DataParallel, FrozenParametersGetNoGradient) {
  torch::manual_seed(6);
  auto net = mlp();
  dpt::Model model(net);
  auto reference = model.clone(torch::kCPU);
  net[0]->as<torch::nn::Linear>()->weight.requires_grad_(false);
  reference.module().children()[0]->as<torch::nn::Linear>()->weight.requires_grad_(false);
  dpt::DataParallel dp(model, cpus(3));
  auto input = torch::randn({9, 6});
  dp.forward(input).square().sum().backward();
  reference.forward(input).square().sum().backward();
  expect_same_gradients(model, reference);
  EXPECT_FALSE(net[0]->as<torch::nn::Linear>()->weight.grad().defined());
}

TEST(DataParallel, GradModeAndInferenceModeReachTheReplicas) {
  torch::manual_seed(7);
  dpt::Model model(mlp());
  dpt::DataParallel dp(model, cpus(3));
  auto input = torch::randn({9, 6});
  EXPECT_TRUE(dp.forward(input).requires_grad());
  {
    torch::NoGradGuard no_grad;
    EXPECT_FALSE(dp.forward(input).requires_grad());
  }
  {
    c10::InferenceMode inference;
    auto output = dp.forward(input);
    EXPECT_TRUE(output.is_inference());
    EXPECT_FALSE(output.requires_grad());
  }
  // After evaluation steps, training still reaches the original.
  auto reference = model.clone(torch::kCPU);
  dp.forward(input).sum().backward();
  reference.forward(input).sum().backward();
  expect_same_gradients(model, reference);
}

// Like PyTorch: replica 0 is the original, so its BatchNorm statistics (from the first piece of the
// batch) are kept; every replica starts each forward from the original's buffers.
TEST(DataParallel, BufferUpdatesOfTheFirstReplicaAreKept) {
  torch::manual_seed(8);
  auto net = torch::nn::Sequential(torch::nn::Linear(4, 6), torch::nn::BatchNorm1d(6), torch::nn::ReLU(),
                                   torch::nn::Linear(6, 2));
  dpt::Model model(net);
  auto reference = model.clone(torch::kCPU);
  dpt::DataParallel dp(model, cpus(3));
  auto input = torch::randn({9, 4});
  for (int step = 0; step < 2; ++step) {
    dp.forward(input);
    reference.forward(input.slice(0, 0, 3));  // what replica 0 saw
  }
  auto buffers = model.named_buffers();
  auto expected = reference.named_buffers();
  ASSERT_EQ(buffers.size(), 3u);  // running_mean, running_var, num_batches_tracked
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_TRUE(torch::allclose(buffers[i].second, expected[i].second, 1e-5, 1e-6)) << buffers[i].first;
  }
  // In evaluation every replica uses the original's running statistics (refreshed, although the
  // replicas' own statistics moved in the training forwards).
  dp.eval();
  reference.eval();
  auto eval_input = torch::randn({9, 4});
  EXPECT_LT(max_relative_error(dp.forward(eval_input), reference.forward(eval_input)), kTolerance);
}

struct PickyImpl : torch::nn::Cloneable<PickyImpl> {
  PickyImpl() { reset(); }
  void reset() override { linear = register_module("linear", torch::nn::Linear(3, 2)); }
  torch::Tensor forward(const torch::Tensor& x) {
    if (x.min().item<float>() < 0) throw std::runtime_error("negative input");
    return linear(x);
  }
  torch::nn::Linear linear{nullptr};
};
TORCH_MODULE(Picky);

TEST(DataParallel, AnErrorInAReplicaNamesTheReplicaAndDevice) {
  dpt::DataParallel dp(dpt::Model(Picky()), cpus(3));
  auto input = torch::rand({6, 3});
  input.slice(0, 4, 6).neg_();  // the rows of replica 2
  try {
    dp.forward(input);
    FAIL() << "the replica's exception was lost";
  } catch (const dpt::ModelError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("replica 2 on cpu"), std::string::npos) << message;
    EXPECT_NE(message.find("negative input"), std::string::npos) << message;
  }
  // The wrapper still works afterwards.
  EXPECT_EQ(dp.forward(torch::rand({6, 3})).size(0), 6);
}

TEST(DataParallel, BadDeviceListsAreClearErrors) {
  EXPECT_THROW(dpt::DataParallel(dpt::Model(mlp()), {torch::Device(torch::kCPU), torch::Device("cuda:0")}),
               dpt::InvalidArgumentError);
  if (torch::cuda::device_count() == 0) {
    try {
      dpt::DataParallel dp{dpt::Model(mlp())};
      FAIL() << "no devices and no CUDA accepted";
    } catch (const dpt::InvalidArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    }
  }
}

}  // namespace

// The training_step contract under DataParallel: each replica runs the model's training_step on
// its piece, and the batch-size-weighted mean of their losses gives the gradients of one
// training_step over the whole batch (uneven pieces: 7 samples on 2 replicas).
TEST(DataParallel, TrainingStepOnReplicasEqualsOneStepOverTheBatch) {
  auto make = [] {
    torch::manual_seed(8);
    torch::jit::Module module("WithStep");
    module.register_attribute("training", c10::BoolType::get(), true);
    module.register_parameter("w", torch::randn({5, 2}).requires_grad_(), false);
    module.define(R"JIT(
def forward(self, x):
    return torch.tanh(x.mm(self.w))
def training_step(self, x, y):
    out = self.forward(x)
    return ((out - y) ** 2).mean() + 0.1 * out.abs().mean()
)JIT");
    return dpt::Model(module);
  };
  dpt::Model model = make(), reference = make();
  dpt::DataParallel dp(model, {torch::kCPU, torch::kCPU});
  auto x = torch::randn({7, 5}), y = torch::randn({7, 2});
  auto loss = dp.training_step(x, y);
  auto expected = reference.run_method("training_step", {x, y}).toTensor();
  EXPECT_EQ(dp.last_replica_count(), 2u);
  EXPECT_LT(dpt::testing::max_relative_error(loss, expected), 1e-6);
  loss.backward();
  expected.backward();
  EXPECT_LT(dpt::testing::max_relative_error(model.parameters()[0].grad(), reference.parameters()[0].grad()), 1e-6);
}
