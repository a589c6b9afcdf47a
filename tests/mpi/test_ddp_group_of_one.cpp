// DDP over a rank group of one (Note [Nothing to reduce] in reducer.h): at every world size each
// rank splits off a communicator of its own, so the fast path is tested beside the real reduction
// of the other tests. Reference: the same module trained without DDP, which must match bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>

#include "ddp_test_util.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/comm_hooks/comm_hooks.h"
#include "dptrain/parallel/ddp/reducer.h"

namespace dpt::testing::ddp {
namespace {

constexpr int kGroupSteps = 3;
constexpr double kGroupLr = 0.1;

CommunicatorPtr group_of_one() {
  auto comm = world();
  return comm->split(comm->rank(), 0);
}

// Trains `options`' DDP over a group of one and a plain copy of the same module on this rank's
// batches; returns how many bucket all-reduces the trace recorded.
size_t train_against_plain(const DdpOptions& options) {
  auto solo = group_of_one();
  EXPECT_EQ(solo->size(), 1);
  auto plain = make_mlp();
  DistributedDataParallel ddp(on_test_device(make_mlp()), solo, options);
  size_t allreduces = 0;
  ddp.set_trace_recorder([&allreduces](const TraceEvent& e) { allreduces += e.name.rfind("allreduce bucket", 0) == 0; });
  const int rank = world()->rank();
  for (int step = 0; step < kGroupSteps; ++step) {
    auto local = global_batch(step, world()->size()).chunk(rank);
    torch::mse_loss(ddp.forward(local.to_test_device().x), local.to_test_device().y).backward();
    torch::mse_loss(plain->forward(local.x), local.y).backward();
    const auto ours = ddp.parameters();
    const auto theirs = plain->parameters();
    for (size_t i = 0; i < ours.size(); ++i) {
      EXPECT_TRUE(torch::equal(ours[i].grad().cpu(), theirs[i].grad())) << "gradient " << i << ", step " << step;
    }
    if (!options.comm_hook()) {
      EXPECT_EQ(ddp.last_iteration_stats().exposed_comm_s, 0.0);
    }
    sgd_step(ours, kGroupLr);
    sgd_step(theirs, kGroupLr);
  }
  const auto ours = ddp.parameters();
  const auto theirs = plain->parameters();
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::equal(ours[i].cpu(), theirs[i])) << "parameter " << i;
  if (!options.comm_hook()) {
    for (const auto& bucket : ddp.reducer().buckets()) {
      EXPECT_FALSE(bucket.contents.defined()) << "a group of one allocated a gradient bucket";
    }
  }
  return allreduces;
}

TEST(DdpGroupOfOne, CopiesNothingLaunchesNothingAndEqualsPlainTraining) {
  EXPECT_EQ(train_against_plain(DdpOptions().bucket_cap_mb(1e-4).first_bucket_cap_mb(1e-4)), 0u);
}

TEST(DdpGroupOfOne, GradientAsBucketViewAllocatesNoBucket) {
  EXPECT_EQ(train_against_plain(DdpOptions().gradient_as_bucket_view(true)), 0u);
}

TEST(DdpGroupOfOne, ACommHookStillRunsOnEveryBucket) {
  // A hook may change the values (compression), so it keeps the full path at world size 1 too.
  auto calls = std::make_shared<std::atomic<int>>(0);
  CommHook counting = [calls](GradBucket& bucket) {
    ++*calls;
    return BucketFuture(bucket.buffer());
  };
  train_against_plain(DdpOptions().comm_hook(counting));
  EXPECT_EQ(calls->load(), kGroupSteps);  // the MLP fits one bucket
}

TEST(DdpGroupOfOne, MissingGradientsAndSecondBackwardsAreStillErrors) {
  auto solo = group_of_one();
  auto local = global_batch(0, 1).to_test_device();
  {
    DistributedDataParallel ddp(on_test_device(make_mlp()), solo);
    auto loss = torch::mse_loss(ddp.forward(local.x), local.y);
    loss.backward({}, /*retain_graph=*/true);
    EXPECT_THROW(loss.backward(), ModelError);
  }
  // A parameter left out of the loss: an error without find_unused_parameters, its .grad left
  // undefined with it.
  auto net = on_test_device(make_mlp());
  auto head = net[4]->as<torch::nn::Linear>();
  Model model(net.ptr(), [](torch::nn::Module& m, const torch::Tensor& x) {
    auto& seq = static_cast<torch::nn::SequentialImpl&>(m);
    return seq[0]->as<torch::nn::Linear>()->forward(x).narrow(1, 0, kOut);
  });
  {
    DistributedDataParallel ddp(model, solo);
    EXPECT_THROW(torch::mse_loss(ddp.forward(local.x), local.y).backward(), ModelError);
  }
  for (auto& p : net->parameters()) p.mutable_grad().reset();
  DistributedDataParallel ddp(model, solo, DdpOptions().find_unused_parameters(true));
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  EXPECT_TRUE(net[0]->as<torch::nn::Linear>()->weight.grad().defined());
  EXPECT_FALSE(head->weight.grad().defined());
}

}  // namespace
}  // namespace dpt::testing::ddp
