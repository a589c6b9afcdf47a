// Soak: many DDP iterations with bucket layouts and no_sync patterns drawn at random. A reducer
// that loses a bucket, reuses a stale one or reduces in a different order on one rank either
// deadlocks (CTest's timeout catches it) or lets the replicas drift apart bit by bit; this test
// looks for both. 1000 iterations at world size 4 (the size the reliability issue asks for), a
// shorter run at the other sizes so every mpirun in CI exercises it.
#include <gtest/gtest.h>

#include <random>
#include <sstream>

#include "ddp_test_util.h"
#include "dptrain/parallel/ddp/reducer.h"

namespace dpt::testing::ddp {
namespace {

torch::nn::Sequential make_wide_mlp(uint64_t seed) {
  torch::manual_seed(seed);
  // Parameters from 3 to 4096 elements, so small caps split the model into many buckets.
  return torch::nn::Sequential(torch::nn::Linear(kIn, 64), torch::nn::Tanh(), torch::nn::Linear(64, 64),
                               torch::nn::Tanh(), torch::nn::Linear(64, 16), torch::nn::Tanh(),
                               torch::nn::Linear(16, kOut));
}

// Index of the first parameter that is not bitwise equal to rank 0's, or -1; the same answer on
// every rank (a MAX all-reduce of the local verdicts), so all ranks fail or pass together.
int64_t first_parameter_differing_from_rank0(const std::vector<torch::Tensor>& params) {
  auto comm = world();
  int64_t local = -1;
  for (size_t i = 0; i < params.size() && local < 0; ++i) {
    auto rank0 = params[i].detach().clone();
    comm->broadcast(rank0, 0);
    if (!torch::equal(rank0, params[i].detach())) local = static_cast<int64_t>(i);
  }
  // Finish the broadcasts the ranks that found nothing yet still expect.
  for (size_t i = local < 0 ? params.size() : static_cast<size_t>(local) + 1; i < params.size(); ++i) {
    auto rank0 = params[i].detach().clone();
    comm->broadcast(rank0, 0);
  }
  auto verdict = torch::tensor({local}, torch::kLong).to(comm->device());
  comm->allreduce(verdict, ReduceOp::Max);
  return verdict.cpu().item<int64_t>();
}

TEST(DdpSoak, RandomBucketCapsAndNoSyncKeepReplicasBitwiseEqual) {
  auto comm = world();
  const int W = comm->size(), rank = comm->rank();
  const int iterations = W == 4 ? 1000 : 150;
  constexpr int kRounds = 10;
  // Every rank draws the same caps and no_sync decisions (same seed); only the data differs.
  std::mt19937 shared_rng(20261123);
  std::uniform_real_distribution<double> cap_mb(0.0005, 0.05);
  std::bernoulli_distribution skip_sync(0.3);

  auto net = on_test_device(make_wide_mlp(5));
  const auto initial = snapshot(net->parameters());
  int synced_steps = 0, accumulated_steps = 0;
  for (int round = 0; round < kRounds; ++round) {
    const double cap = cap_mb(shared_rng);
    // A fresh DDP per round: the reducer rebuilds its buckets for the new cap. Construction
    // broadcasts rank 0's parameters, so drift is checked before the next round starts.
    DistributedDataParallel ddp(net, comm, DdpOptions().bucket_cap_mb(cap).first_bucket_cap_mb(cap));
    const int begin = round * iterations / kRounds, end = (round + 1) * iterations / kRounds;
    for (int it = begin; it < end; ++it) {
      auto gen = torch::make_generator<torch::CPUGeneratorImpl>(static_cast<uint64_t>(it) * 131 + rank);
      auto x = torch::randn({kLocalBatch, kIn}, gen).to(test_device());
      auto y = torch::randn({kLocalBatch, kOut}, gen).to(test_device());
      // The last iteration of a round always synchronizes, so no rank-local gradient is left over.
      if (it + 1 < end && skip_sync(shared_rng)) {
        auto guard = ddp.no_sync();
        torch::mse_loss(ddp.forward(x), y).backward();
        ++accumulated_steps;
      } else {
        torch::mse_loss(ddp.forward(x), y).backward();
        sgd_step(ddp.parameters(), 0.01);
        ++synced_steps;
      }
    }
    const int64_t differing = first_parameter_differing_from_rank0(net->parameters());
    ASSERT_EQ(differing, -1) << "round " << round << " (bucket cap " << cap << " MB, "
                             << ddp.reducer().buckets().size() << " buckets): parameter " << differing
                             << " differs between ranks";
  }
  EXPECT_EQ(synced_steps + accumulated_steps, iterations);
  EXPECT_GT(accumulated_steps, iterations / 5) << "the no_sync pattern was not exercised";
  expect_changed(net->parameters(), initial);
}

}  // namespace
}  // namespace dpt::testing::ddp
