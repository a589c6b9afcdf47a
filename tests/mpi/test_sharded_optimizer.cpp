// ZeRO-1 (dpt::ShardedOptimizer) at every world size the mpi suite runs (1-4): training equals one
// process on the global batch with the unsharded optimizer (SGD with momentum and weight decay,
// Adam), whether the gradients are reduce-scattered by the optimizer (DDP under no_sync) or
// already averaged by DDP; and each rank holds 1/world of the optimizer state.
#include <gtest/gtest.h>

#include "ddp_test_util.h"
#include "dptrain/parallel/distributed_data_parallel.h"
#include "dptrain/parallel/sharded_optimizer.h"

namespace dpt::testing::ddp {
namespace {

constexpr int kSteps = 4;

using MakeOptimizer = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;

MakeOptimizer sgd() {
  return [](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3));
  };
}

MakeOptimizer adam() {
  return [](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(0.01));
  };
}

void check_against_one_process(const MakeOptimizer& make, ShardedOptimizer::Gradients gradients) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  auto initial = snapshot(reference->parameters());
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp.parameters(), comm, make, gradients);
  auto plain = make(reference->parameters());
  for (int step = 0; step < kSteps; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    if (gradients == ShardedOptimizer::Gradients::Local) {
      DistributedDataParallel::NoSyncGuard local_gradients(ddp);
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
    } else {
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
    }
    sharded.step();
    sharded.zero_grad();
    plain->zero_grad();
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    plain->step();
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  expect_changed(ddp.parameters(), initial);
}

TEST(ShardedOptimizer, SgdMomentumReduceScatterEqualsOneProcess) {
  check_against_one_process(sgd(), ShardedOptimizer::Gradients::Local);
}

TEST(ShardedOptimizer, AdamReduceScatterEqualsOneProcess) {
  check_against_one_process(adam(), ShardedOptimizer::Gradients::Local);
}

TEST(ShardedOptimizer, AdamAfterDdpAveragingEqualsOneProcess) {
  check_against_one_process(adam(), ShardedOptimizer::Gradients::AlreadyAveraged);
}

TEST(ShardedOptimizer, EachRankHoldsItsShareOfTheState) {
  auto comm = world();
  const int W = comm->size();
  auto net = on_test_device(make_mlp());
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp.parameters(), comm, adam());
  auto local = global_batch(0, W).chunk(comm->rank()).to_test_device();
  {
    DistributedDataParallel::NoSyncGuard local_gradients(ddp);
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
  }
  sharded.step();
  // No second copy of the model: the parameters and their gradients live in two flat buffers.
  const auto params = ddp.parameters();
  EXPECT_TRUE(params.front().is_alias_of(params.back()));
  EXPECT_TRUE(params.front().grad().is_alias_of(params.back().grad()));
  int64_t total = 0;
  for (const auto& p : ddp.parameters()) total += p.numel();
  const int64_t shard = (total + W - 1) / W;
  EXPECT_EQ(sharded.total_elements(), total);
  EXPECT_EQ(sharded.shard_size(), shard);
  // Adam: two moments of this rank's shard only.
  EXPECT_EQ(sharded.state_bytes(), 2 * shard * static_cast<int64_t>(sizeof(float)));
  auto all = torch::tensor({static_cast<double>(sharded.state_bytes())}, torch::kFloat64).to(test_device());
  comm->allreduce(all);
  EXPECT_LE(all.item<double>(), 2.0 * (total + W - 1) * sizeof(float));  // the unsharded state, plus padding
}

// Global-norm clipping across the shards equals torch::nn::utils::clip_grad_norm_ on the whole
// averaged gradient of one process (a bound small enough that every step clips).
TEST(ShardedOptimizer, ClippingUsesTheGlobalNormAcrossShards) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  constexpr double kMaxNorm = 0.05;
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp.parameters(), comm, sgd());
  sharded.set_max_grad_norm(kMaxNorm);
  auto plain = sgd()(reference->parameters());
  for (int step = 0; step < kSteps; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    {
      DistributedDataParallel::NoSyncGuard local_gradients(ddp);
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
    }
    sharded.step();
    sharded.zero_grad();
    plain->zero_grad();
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    const double norm = torch::nn::utils::clip_grad_norm_(reference->parameters(), kMaxNorm);
    EXPECT_GT(norm, kMaxNorm) << "the bound must make every step clip";
    EXPECT_NEAR(sharded.grad_norm(), norm, 1e-5 * norm) << "step " << step;
    plain->step();
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

// The state of an unsharded Adam, per parameter, under ShardedOptimizer's keys.
ShardedOptimizer::State adam_state(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params) {
  ShardedOptimizer::State out(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    auto& state = static_cast<torch::optim::AdamParamState&>(*optimizer.state().at(params[i].unsafeGetTensorImpl()));
    out[i] = {{"exp_avg", state.exp_avg()}, {"exp_avg_sq", state.exp_avg_sq()},
              {"step", torch::tensor(state.step(), torch::kInt64)}};
  }
  return out;
}

// The gathered state is what one process's Adam holds (so a checkpoint of it is the same at any
// world size), and a sharded optimizer given one process's state continues like that process.
TEST(ShardedOptimizer, FullStateIsTheUnshardedStateAndLoadsAtThisWorldSize) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  DistributedDataParallel ddp(net, comm);
  auto sharded = std::make_unique<ShardedOptimizer>(ddp.parameters(), comm, adam());
  auto plain = adam()(reference->parameters());
  auto train_step = [&](int step, ShardedOptimizer& optimizer) {
    auto batch = global_batch(step, W);
    {
      DistributedDataParallel::NoSyncGuard local_gradients(ddp);
      torch::mse_loss(ddp.forward(batch.chunk(rank).to_test_device().x), batch.chunk(rank).to_test_device().y)
          .backward();
    }
    optimizer.step();
    optimizer.zero_grad();
    plain->zero_grad();
    torch::mse_loss(reference->forward(batch.x), batch.y).backward();
    plain->step();
  };
  for (int step = 0; step < 2; ++step) train_step(step, *sharded);
  const auto gathered = sharded->full_state();
  const auto expected = adam_state(*plain, reference->parameters());
  ASSERT_EQ(gathered.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    for (const auto& [key, tensor] : expected[i]) {
      ASSERT_TRUE(gathered[i].count(key)) << key;
      EXPECT_LT(max_relative_error(gathered[i].at(key).cpu().to(torch::kFloat64), tensor.to(torch::kFloat64)), 1e-5)
          << "parameter " << i << " " << key;
    }
  }
  // A fresh sharded optimizer takes the one-process state and continues exactly as that process.
  auto resumed = std::make_unique<ShardedOptimizer>(ddp.parameters(), comm, adam());
  ShardedOptimizer::State moved = expected;
  for (auto& entry : moved) {
    for (auto& [key, tensor] : entry) {
      if (key != "step") tensor = tensor.to(test_device());
    }
  }
  resumed->load_full_state(moved);
  for (int step = 2; step < 4; ++step) train_step(step, *resumed);
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

}  // namespace
}  // namespace dpt::testing::ddp
