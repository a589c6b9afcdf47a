// DDP on a CUDA device (world size 1 here: the gpu binary is not run under mpirun). Skips without
// a device. Checks that hooks, buckets and the default hook work on CUDA tensors and match a CPU
// reference.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "dptrain/parallel/distributed_data_parallel.h"
#include "dptrain/parallel/reducer.h"
#include "dptrain/parallel/runtime.h"
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

}  // namespace
