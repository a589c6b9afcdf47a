// Async collectives make progress while the caller computes, without the caller entering MPI.
#include <gtest/gtest.h>

#include <chrono>

#include "communicator_test_util.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

TEST(CommAsync, CompletesWhileCallerComputesWithoutWaiting) {
  auto comm = world();
  auto tensor = rank_tensor(comm->rank(), 1 << 20, torch::kFloat32).to(comm->device());
  auto work = comm->allreduce_async(tensor, ReduceOp::Sum);
  // The caller never calls into the communicator until the collective is done: it only computes
  // and polls is_completed(). Completion therefore proves the collective progressed on its own.
  auto a = torch::rand({64, 64});
  int64_t rounds = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!work->is_completed() && std::chrono::steady_clock::now() < deadline) {
    a = torch::tanh(a.mm(a));
    ++rounds;
  }
  ASSERT_TRUE(work->is_completed()) << "no progress within 60 s while the caller computed";
  work->wait();
  EXPECT_EQ(max_relative_error(tensor, expected_reduction(comm->size(), 1 << 20, ReduceOp::Sum)), 0.0);
  RecordProperty("compute_rounds_during_allreduce", static_cast<int>(rounds));
}

TEST(CommAsync, ManyOutstandingOpsOfMixedKinds) {
  auto comm = world();
  std::vector<torch::Tensor> sums, broadcasts;
  std::vector<WorkPtr> works;
  for (int i = 0; i < 20; ++i) {
    sums.push_back(torch::full({100}, comm->rank() + i, torch::TensorOptions(torch::kInt64).device(comm->device())));
    works.push_back(comm->allreduce_async(sums.back()));
    broadcasts.push_back(torch::full({10}, comm->rank(), torch::TensorOptions(torch::kFloat64).device(comm->device())));
    works.push_back(comm->broadcast_async(broadcasts.back(), i % comm->size()));
  }
  for (auto& w : works) w->wait();
  const int64_t n = comm->size();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(sums[static_cast<size_t>(i)][99].item<int64_t>(), n * (n - 1) / 2 + n * i);
    EXPECT_EQ(broadcasts[static_cast<size_t>(i)][0].item<double>(), static_cast<double>(i % comm->size()));
  }
}

}  // namespace
}  // namespace dpt::testing
