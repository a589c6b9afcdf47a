// What ShardedOptimizer::step does besides stepping (world sizes 1-4): global-norm clipping across
// the shards, AMP's unscaling and its all-ranks verdict on non-finite gradients, the gathered
// (world-size independent) optimizer state and its loading, and Join's refusal to shadow.
#include <gtest/gtest.h>

#include <limits>

#include "dptrain/core/error.h"
#include "dptrain/parallel/ddp/join.h"
#include "sharded_test_util.h"

namespace dpt::testing::ddp {
namespace {

constexpr int kStepsPerRun = 4;

// Global-norm clipping across the shards equals torch::nn::utils::clip_grad_norm_ on the whole
// averaged gradient of one process (a bound small enough that every step clips).
TEST(ShardedOptimizerStep, ClippingUsesTheGlobalNormAcrossShards) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  constexpr double kMaxNorm = 0.05;
  for (int stage : {1, 2}) {
    auto net = on_test_device(make_mlp());
    auto reference = make_mlp();
    DistributedDataParallel ddp(net, comm);
    ShardedOptimizer sharded(ddp, sgd_momentum(), tiny_units(stage));
    sharded.set_max_grad_norm(kMaxNorm);
    auto plain = sgd_momentum()(reference->parameters());
    for (int step = 0; step < kStepsPerRun; ++step) {
      auto batch = global_batch(step, W);
      auto local = batch.chunk(rank).to_test_device();
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
      sharded.step();
      sharded.zero_grad();
      plain->zero_grad();
      torch::mse_loss(reference->forward(batch.x), batch.y).backward();
      const double norm = torch::nn::utils::clip_grad_norm_(reference->parameters(), kMaxNorm);
      EXPECT_GT(norm, kMaxNorm) << "the bound must make every step clip";
      EXPECT_NEAR(sharded.grad_norm(), norm, 1e-5 * norm) << "stage " << stage << " step " << step;
      plain->step();
    }
    expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
  }
}

// AMP: a loss multiplied by the scale and step(scale) equal the unscaled run; an Inf in one rank's
// gradient makes every rank skip the update (the same verdict everywhere) and keep its parameters.
TEST(ShardedOptimizerStep, GradScaleUnscalesAndNonFiniteSkipsOnEveryRank) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  constexpr double kScale = 1024.0;
  for (int stage : {1, 2}) {
    auto net = on_test_device(make_mlp());
    auto reference = make_mlp();
    DistributedDataParallel ddp(net, comm);
    ShardedOptimizer sharded(ddp, adam(), tiny_units(stage));
    auto plain = adam()(reference->parameters());
    for (int step = 0; step < kStepsPerRun; ++step) {
      auto batch = global_batch(step, W);
      auto local = batch.chunk(rank).to_test_device();
      (torch::mse_loss(ddp.forward(local.x), local.y) * kScale).backward();
      EXPECT_TRUE(sharded.step(kScale));
      sharded.zero_grad();
      plain->zero_grad();
      torch::mse_loss(reference->forward(batch.x), batch.y).backward();
      plain->step();
    }
    expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);

    const auto before = snapshot(ddp.parameters());
    auto local = global_batch(kStepsPerRun, W).chunk(rank).to_test_device();
    auto loss = torch::mse_loss(ddp.forward(local.x), local.y);
    if (rank == W - 1) loss = loss * std::numeric_limits<float>::infinity();
    (loss * kScale).backward();
    EXPECT_FALSE(sharded.step(kScale)) << "stage " << stage << " rank " << rank;
    sharded.zero_grad();
    const auto after = ddp.parameters();
    for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i].cpu(), before[i].cpu()));
  }
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
TEST(ShardedOptimizerStep, FullStateIsTheUnshardedStateAndLoadsAtThisWorldSize) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  for (int stage : {1, 2}) {
    auto net = on_test_device(make_mlp());
    auto reference = make_mlp();
    DistributedDataParallel ddp(net, comm);
    auto sharded = std::make_unique<ShardedOptimizer>(ddp, adam(), tiny_units(stage));
    auto plain = adam()(reference->parameters());
    auto train_step = [&](int step, ShardedOptimizer& optimizer) {
      auto batch = global_batch(step, W);
      auto local = batch.chunk(rank).to_test_device();
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
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
    sharded.reset();
    auto resumed = std::make_unique<ShardedOptimizer>(ddp, adam(), ShardingOptions().stage(stage));
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
}

// A rank out of batches cannot shadow the optimizer's collectives: Join says so at once, unless it
// is to throw on early termination (then no rank shadows anything).
TEST(ShardedOptimizerStep, JoinThatShadowsIsRefused) {
  auto comm = world();
  auto net = on_test_device(make_mlp());
  DistributedDataParallel ddp(net, comm);
  ShardedOptimizer sharded(ddp, adam());
  EXPECT_THROW({ Join join(ddp); }, UnsupportedError);
  Join throwing(ddp, JoinOptions().throw_on_early_termination(true));
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  sharded.step();
  throwing.finish();
}

TEST(ShardedOptimizerStep, BadOptionsAreOneClearError) {
  auto comm = world();
  auto net = make_mlp();
  EXPECT_THROW(ShardedOptimizer(net->parameters(), comm, adam(), ShardingOptions().stage(3)), InvalidArgumentError);
  EXPECT_THROW(ShardedOptimizer(net->parameters(), comm, adam(), ShardingOptions().stage(2).gradients_already_averaged(true)),
               InvalidArgumentError);
}

}  // namespace
}  // namespace dpt::testing::ddp
