// ZeRO stages 1 and 2 (dpt::ShardedOptimizer) at every world size the mpi suite runs (1-4): training
// equals plain DDP with the same optimizer and one process on the global batch (SGD with momentum
// and weight decay, Adam), with the gradients reduce-scattered during backward, accumulated over
// micro-batches, or already averaged by DDP; each rank holds 1/world of the optimizer state (and at
// stage 2 of the gradient), and the reduce-scatter starts while backward is still running.
#include <gtest/gtest.h>

#include "sharded_test_util.h"

namespace dpt::testing::ddp {
namespace {

constexpr int kShardedSteps = 4;

struct Run {
  int stage = 1;
  ShardingOptions sharding;
  int micro_batches = 1;
};

// A sharded DDP rank, a plain DDP rank and one process on the global batch, `kShardedSteps` steps each.
void check_against_ddp_and_one_process(const MakeOptimizer& make, const Run& run) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(make_mlp());
  auto plain_net = on_test_device(make_mlp());
  auto reference = make_mlp();
  auto initial = snapshot(reference->parameters());
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp, make, run.sharding);
  DistributedDataParallel plain_ddp(plain_net, comm);
  auto plain_ddp_optimizer = make(plain_ddp.parameters());
  auto one_process = make(reference->parameters());
  const int64_t micro = kLocalBatch / run.micro_batches;
  for (int step = 0; step < kShardedSteps; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    for (int m = 0; m < run.micro_batches; ++m) {
      // Stage 1 keeps whole gradients and reduces once; stage 2 reduces every micro-batch.
      std::optional<ShardedOptimizer::NoSyncGuard> local_only;
      if (run.stage == 1 && m + 1 < run.micro_batches) local_only.emplace(sharded);
      auto x = local.x.narrow(0, m * micro, micro), y = local.y.narrow(0, m * micro, micro);
      (torch::mse_loss(ddp.forward(x), y) / run.micro_batches).backward();
    }
    sharded.step();
    sharded.zero_grad();
    plain_ddp_optimizer->zero_grad();
    torch::mse_loss(plain_ddp.forward(local.x), local.y).backward();
    plain_ddp_optimizer->step();
    one_process->zero_grad();
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    one_process->step();
  }
  expect_params_near(ddp.parameters(), plain_ddp.parameters(), 1e-5);
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  expect_changed(ddp.parameters(), initial);
}

TEST(ShardedOptimizer, Stage1SgdMomentumEqualsDdpAndOneProcess) {
  check_against_ddp_and_one_process(sgd_momentum(), {1, ShardingOptions().stage(1)});
}
TEST(ShardedOptimizer, Stage1AdamEqualsDdpAndOneProcess) {
  check_against_ddp_and_one_process(adam(), {1, ShardingOptions().stage(1)});
}
TEST(ShardedOptimizer, Stage2SgdMomentumEqualsDdpAndOneProcess) {
  check_against_ddp_and_one_process(sgd_momentum(), {2, ShardingOptions().stage(2)});
}
TEST(ShardedOptimizer, Stage2AdamEqualsDdpAndOneProcess) {
  check_against_ddp_and_one_process(adam(), {2, ShardingOptions().stage(2)});
}
TEST(ShardedOptimizer, ManyUnitsEqualDdpAndOneProcessAtBothStages) {
  check_against_ddp_and_one_process(adam(), {1, tiny_units(1)});
  check_against_ddp_and_one_process(sgd_momentum(), {2, tiny_units(2)});
}
TEST(ShardedOptimizer, AccumulatedMicroBatchesEqualDdpAndOneProcess) {
  check_against_ddp_and_one_process(adam(), {1, tiny_units(1), 2});
  check_against_ddp_and_one_process(adam(), {2, tiny_units(2), 2});
}

// Stage 1 on gradients a DDP has all-reduced already: this rank's pieces are sliced, not reduced.
TEST(ShardedOptimizer, AdamAfterDdpAveragingEqualsOneProcess) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp.parameters(), comm, adam(), tiny_units(1).gradients_already_averaged(true));
  auto one_process = adam()(reference->parameters());
  for (int step = 0; step < kShardedSteps; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    sharded.step();
    sharded.zero_grad();
    one_process->zero_grad();
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    one_process->step();
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

TEST(ShardedOptimizer, EachRankHoldsItsShareOfStateAndGradient) {
  auto comm = world();
  const int W = comm->size();
  for (int stage : {1, 2}) {
    auto net = on_test_device(make_mlp());
    DistributedDataParallel ddp(net, comm);
    ShardedOptimizer sharded(ddp, adam(), tiny_units(stage));
    auto local = global_batch(0, W).chunk(comm->rank()).to_test_device();
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    sharded.step();
    const auto params = ddp.parameters();
    // No second copy of the model: the parameters live in one flat buffer.
    EXPECT_TRUE(params.front().is_alias_of(params.back()));
    int64_t total = 0, owned = 0;
    for (const auto& p : params) {
      total += p.numel();
      owned += (p.numel() + W - 1) / W;  // one unit per parameter: each padded to a multiple of W
    }
    EXPECT_EQ(sharded.units(), static_cast<int64_t>(params.size()));
    EXPECT_EQ(sharded.total_elements(), total);
    EXPECT_EQ(sharded.shard_size(), owned);
    const auto bytes = static_cast<int64_t>(sizeof(float));
    EXPECT_EQ(sharded.state_bytes(), 2 * owned * bytes) << "Adam: two moments of this rank's pieces only";
    if (stage == 1) {
      EXPECT_TRUE(params.front().grad().is_alias_of(params.back().grad()));
      EXPECT_EQ(sharded.gradient_bytes(), (owned * W + owned) * bytes);
    } else if (W > 1) {
      for (const auto& p : params) EXPECT_FALSE(p.grad().defined()) << "stage 2 keeps no whole gradient";
      EXPECT_EQ(sharded.gradient_bytes(), owned * bytes);
    }
    EXPECT_EQ(ddp.reducer().buckets().front().contents.defined(), false) << "a DDP that never reduces has no buckets";
  }
}

// The reduce-scatter of the last layer's unit is started while backward still computes the first
// layer: at stage 2 its .grad has been released (copied out and sent) by then.
TEST(ShardedOptimizer, ReduceScatterStartsDuringBackward) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "one rank reduces nothing";
  auto net = on_test_device(make_mlp());
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp, adam(), tiny_units(2));
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  auto x = local.x.clone().requires_grad_(true);
  const auto last_bias = ddp.parameters().back();
  bool released_before_backward_ended = false;
  // The input's gradient is the last thing backward computes.
  x.register_hook([&](const torch::Tensor& grad) {
    released_before_backward_ended = !last_bias.grad().defined();
    return grad;
  });
  torch::mse_loss(ddp.forward(x), local.y).backward();
  EXPECT_TRUE(released_before_backward_ended);
  sharded.step();
}

// A rank whose backward reaches none of its parameters still takes part (its round runs in
// step()): no rank waits forever and all end with the same parameters.
TEST(ShardedOptimizer, ABackwardThatReachesNoParameterStillReduces) {
  auto comm = world();
  if (comm->size() == 1) GTEST_SKIP() << "needs a peer";
  for (int stage : {1, 2}) {
    auto net = on_test_device(make_mlp());
    DistributedDataParallel ddp(net, comm, DdpOptions().broadcast_buffers(false));
    ShardedOptimizer sharded(ddp, sgd_momentum(), tiny_units(stage));
    auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
    if (comm->rank() == comm->size() - 1) {
      auto detached = local.x.clone().requires_grad_(true);
      (detached * 2).sum().backward();  // no parameter
    } else {
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
    }
    sharded.step();
    std::vector<torch::Tensor> flat;
    for (const auto& p : ddp.parameters()) flat.push_back(p.detach().reshape(-1));
    auto mine = torch::cat(flat);
    auto first = mine.clone();
    comm->broadcast(first, 0);
    EXPECT_TRUE(torch::equal(mine, first)) << "stage " << stage;
  }
}

}  // namespace
}  // namespace dpt::testing::ddp
