// DDP on a CUDA device (world size 1 here: the gpu binary is not run under mpirun). Skips without
// a device. Checks that hooks, buckets and the default hook work on CUDA tensors and match a CPU
// reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include "dptrain/core/model.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "dptrain/parallel/ddp/reducer.h"
#include "dptrain/parallel/runtime/runtime.h"
#include "test_support.h"

namespace {

TEST(DdpCuda, MatchesCpuReference_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto comm = dpt::testing::world();
  auto make = [] {
    torch::manual_seed(4);
    return torch::nn::Sequential(torch::nn::Linear(6, 16), torch::nn::Tanh(), torch::nn::Linear(16, 3));
  };
  auto net = make(), reference = make();
  net->to(comm->device().is_cuda() ? comm->device() : torch::Device(torch::kCUDA, 0));
  dpt::DistributedDataParallel ddp(net, comm, dpt::DdpOptions().gradient_as_bucket_view(true).bucket_cap_mb(1e-4));
  for (int step = 0; step < 3; ++step) {
    torch::manual_seed(100 + step);
    auto x = torch::randn({8, 6}), y = torch::randn({8, 3});
    torch::mse_loss(ddp.forward(x.to(net->parameters()[0].device())), y.to(net->parameters()[0].device())).backward();
    torch::mse_loss(reference->forward(x), y).backward();
    torch::NoGradGuard no_grad;
    for (auto& p : ddp.parameters()) p.sub_(p.grad(), 0.1), p.mutable_grad().zero_();
    for (auto& p : reference->parameters()) p.sub_(p.grad(), 0.1), p.mutable_grad().zero_();
  }
  auto mine = ddp.parameters(), expected = reference->parameters();
  for (size_t i = 0; i < mine.size(); ++i) EXPECT_LT(dpt::testing::max_relative_error(mine[i], expected[i]), 1e-5);
}

// AMP with a scripted model: the training forward runs the executor's unoptimized plan, where
// eager autocast applies to each op (inside an optimized DifferentiableGraph it would not).
TEST(DdpCuda, AutocastAppliesInsideAScriptedModel_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::jit::Module script("Net");
  script.register_attribute("training", c10::BoolType::get(), true);
  script.register_parameter("w", torch::randn({8, 4}, torch::kCUDA).requires_grad_(), false);
  script.define("def forward(self, x):\n    return torch.relu(x.mm(self.w))\n");
  dpt::Model model(script);
  model.train();
  auto x = torch::randn({16, 8}, torch::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
  torch::Tensor out;
  for (int run = 0; run < 4; ++run) out = model.forward(x);  // past the profiling runs
  at::autocast::decrement_nesting();
  at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  EXPECT_EQ(out.scalar_type(), torch::kHalf);
  out.to(torch::kFloat).sum().backward();
  EXPECT_TRUE(model.parameters()[0].grad().defined());
}

}  // namespace
