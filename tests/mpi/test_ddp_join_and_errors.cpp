// Uneven inputs under Join, and the errors DDP reports on every rank instead of hanging.
#include <gtest/gtest.h>

#include "ddp_test_util.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/ddp/ddp_consistency.h"
#include "dptrain/parallel/ddp/join.h"

namespace dpt::testing::ddp::join_and_errors {
namespace {

constexpr double kLr = 0.1;

int batches_of(int rank) { return rank + 1; }  // rank r has r + 1 batches

// Rank r trains on r + 1 batches inside a Join; the reference trains, at step i, on the samples of
// the ranks that still had a batch. With divide_by_initial_world_size the step's gradient is the
// sum of those ranks' means over the world size; without, their plain average.
void check_join(bool divide_by_initial_world_size) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  auto reference = make_mlp();
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm);
  {
    Join join(ddp, JoinOptions().divide_by_initial_world_size(divide_by_initial_world_size));
    for (int step = 0; step < batches_of(rank); ++step) {
      auto local = global_batch(step, W).chunk(rank).to_test_device();
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
      sgd_step(ddp.parameters(), kLr);
    }
    join.finish();
  }
  for (int step = 0; step < batches_of(W - 1); ++step) {
    auto batch = global_batch(step, W);
    int active = 0;
    for (int r = 0; r < W; ++r) active += step < batches_of(r);
    const double divisor = divide_by_initial_world_size ? W : active;
    torch::Tensor loss = torch::zeros({});
    for (int r = 0; r < W; ++r) {
      if (step >= batches_of(r)) continue;
      auto chunk = batch.chunk(r);
      loss = loss + torch::mse_loss(reference->forward(chunk.x), chunk.y) / divisor;
    }
    loss.backward();
    sgd_step(reference->parameters(), kLr);
  }
  // Every rank, also those that finished early, ends with the final model.
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

TEST(DdpJoin, UnevenInputsAverageOverActiveRanks) { check_join(false); }
TEST(DdpJoin, UnevenInputsDivideByInitialWorldSize) { check_join(true); }

TEST(DdpJoin, ThrowOnEarlyTerminationThrowsOnEveryRank) {
  auto comm = world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  const int rank = comm->rank();
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm);
  bool thrown = false;
  try {
    Join join(ddp, JoinOptions().throw_on_early_termination(true));
    for (int step = 0; step < batches_of(rank); ++step) {
      auto local = global_batch(step, comm->size()).chunk(rank).to_test_device();
      torch::mse_loss(ddp.forward(local.x), local.y).backward();
      sgd_step(ddp.parameters(), kLr);
    }
    join.finish();
  } catch (const DataError& e) {
    thrown = true;
    EXPECT_NE(std::string(e.what()).find("ran out of batches"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(thrown) << "rank " << rank;
  comm->barrier();  // still in step with each other afterwards
}

TEST(DdpErrors, DifferentModelOnOneRankIsReportedOnEveryRank) {
  auto comm = world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  torch::manual_seed(1);
  const int64_t hidden = comm->rank() == 1 ? 12 : 10;
  auto net = on_test_device(
      torch::nn::Sequential(torch::nn::Linear(kIn, hidden), torch::nn::Tanh(), torch::nn::Linear(hidden, kOut)));
  try {
    DistributedDataParallel ddp(net, comm);
    ADD_FAILURE() << "no error on rank " << comm->rank();
  } catch (const ModelError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("0.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1 has"), std::string::npos) << message;
    EXPECT_NE(message.find("[12, 6]"), std::string::npos) << message;
  }
  comm->barrier();
}

TEST(DdpErrors, UnusedParameterWithoutFindUnusedNamesIt) {
  auto comm = world();
  struct WithUnusedImpl : torch::nn::Module {
    WithUnusedImpl() {
      used = register_module("used", torch::nn::Linear(kIn, kOut));
      spare = register_module("spare", torch::nn::Linear(kIn, kOut));
    }
    torch::Tensor forward(const torch::Tensor& x) { return used->forward(x); }
    torch::nn::Linear used{nullptr}, spare{nullptr};
  };
  auto module = on_test_device(std::make_shared<WithUnusedImpl>());
  Model model(module, [](torch::nn::Module& m, const torch::Tensor& x) { return static_cast<WithUnusedImpl&>(m).forward(x); });
  DistributedDataParallel ddp(model, comm);
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  try {
    torch::mse_loss(ddp.forward(local.x), local.y).backward();
    ADD_FAILURE() << "no error for the unused parameter";
  } catch (const std::exception& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("spare.weight"), std::string::npos) << message;
    EXPECT_NE(message.find("find_unused_parameters"), std::string::npos) << message;
  }
  // The ranks are still in step: the next iteration works (with the spare layer used).
  comm->barrier();
}

TEST(DdpErrors, DetailModeNamesMismatchedCollectives) {
  auto comm = world();
  // Agreeing ranks: a DETAIL-mode iteration runs normally.
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm, DdpOptions().debug(DebugLevel::Detail));
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  EXPECT_EQ(ddp.last_iteration_stats().iteration, 1);
  if (comm->size() < 2) return;
  // Disagreeing ranks: the check names both sides on every rank.
  const std::string mine = comm->rank() == 1 ? "comm hook on bucket 0 Float[7]" : "comm hook on bucket 0 Float[9]";
  try {
    check_next_collective(*comm, mine);
    ADD_FAILURE() << "no error";
  } catch (const CommunicationError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("rank 1 has 'comm hook on bucket 0 Float[7]'"), std::string::npos) << message;
    EXPECT_NE(message.find("Float[9]"), std::string::npos) << message;
  }
}

// retain_graph lets a loss be backpropagated twice; DDP reduced the first backward's gradients, so
// the second would leave unaveraged gradients behind: PyTorch raises, and so does dptrain.
TEST(DdpErrors, SecondBackwardThroughTheSameForwardIsAnError) {
  auto comm = world();
  DistributedDataParallel ddp(on_test_device(make_mlp()), comm);
  auto local = global_batch(0, comm->size()).chunk(comm->rank()).to_test_device();
  auto loss = torch::mse_loss(ddp.forward(local.x), local.y);
  loss.backward({}, /*retain_graph=*/true);
  try {
    loss.backward();
    ADD_FAILURE() << "no error for the second backward";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("second backward through the same forward"), std::string::npos) << e.what();
  }
  // A new forward starts a new iteration, and the ranks are still in step.
  torch::mse_loss(ddp.forward(local.x), local.y).backward();
  EXPECT_EQ(ddp.last_iteration_stats().iteration, 2);
}

// One rank's backward reaches no parameter: through the model's output (a branch without
// parameters), or not even that (a loss unrelated to the model, finished by finish_backward()).
// Its buckets still go out, as zeros, so the other ranks get their average instead of waiting for
// the timeout.
TEST(DdpErrors, RankWhoseBackwardReachesNoParameterDoesNotStallThePeers) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  if (W < 2) GTEST_SKIP() << "needs 2 ranks";
  auto net = on_test_device(make_mlp());
  auto reference = make_mlp();
  const bool idle = rank == 1;
  Model model(net.ptr(), [idle](torch::nn::Module& m, const torch::Tensor& x) {
    return idle ? x.narrow(1, 0, kOut) * 2.0 : static_cast<torch::nn::SequentialImpl&>(m).forward(x);
  });
  DistributedDataParallel ddp(model, comm, DdpOptions().find_unused_parameters(true));
  for (int step = 0; step < 2; ++step) {
    auto batch = global_batch(step, W);
    auto local = batch.chunk(rank).to_test_device();
    auto x = local.x.clone().requires_grad_(idle);
    if (step == 0 || !idle) {
      torch::mse_loss(ddp.forward(x), local.y).backward();  // reaches the output only on rank 1
    } else {
      ddp.forward(x);
      (torch::ones({2}, test_device()).requires_grad_() * 3).sum().backward();  // reaches nothing of DDP's
      ddp.finish_backward();
    }
    sgd_step(ddp.parameters(), kLr);
    torch::Tensor loss = torch::zeros({});
    for (int r = 0; r < W; ++r) {
      if (r == 1) continue;  // rank 1 contributes zero gradients
      auto chunk = batch.chunk(r);
      loss = loss + torch::mse_loss(reference->forward(chunk.x), chunk.y) / W;
    }
    loss.backward();
    sgd_step(reference->parameters(), kLr);
  }
  expect_params_near(ddp.parameters(), reference->parameters(), 1e-5);
}

}  // namespace
}  // namespace dpt::testing::ddp::join_and_errors
