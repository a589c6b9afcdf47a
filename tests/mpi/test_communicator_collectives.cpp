// broadcast, allgather, reduce_scatter, barrier, coalesced allreduce and split, every dtype.
#include <gtest/gtest.h>

#include <chrono>

#include <algorithm>
#include <cstdlib>

#include "communicator_test_util.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

class CommCollectives : public ::testing::TestWithParam<c10::ScalarType> {};

TEST_P(CommCollectives, BroadcastFromEveryRoot) {
  auto dtype = GetParam();
  auto comm = world();
  for (int root = 0; root < comm->size(); ++root) {
    for (int64_t numel : {int64_t{0}, int64_t{5}, int64_t{3001}}) {
      auto tensor = rank_tensor(comm->rank(), numel, dtype);
      comm->broadcast(tensor, root);
      EXPECT_TRUE(tensor.equal(rank_tensor(root, numel, dtype))) << "root " << root << " numel " << numel;
    }
  }
}

TEST_P(CommCollectives, AllgatherPutsRankSlicesInOrder) {
  auto dtype = GetParam();
  auto comm = world();
  for (int64_t numel : {int64_t{0}, int64_t{3}, int64_t{1025}}) {
    auto input = rank_tensor(comm->rank(), numel, dtype);
    auto output = torch::full({comm->size() * numel}, 99, dtype);
    comm->allgather(input, output);
    for (int r = 0; r < comm->size(); ++r) {
      EXPECT_TRUE(output.slice(0, r * numel, (r + 1) * numel).equal(rank_tensor(r, numel, dtype)))
          << "slice of rank " << r << ", numel " << numel;
    }
  }
}

TEST_P(CommCollectives, ReduceScatterSumsEachRanksSlice) {
  auto dtype = GetParam();
  auto comm = world();
  for (int64_t numel : {int64_t{0}, int64_t{4}, int64_t{777}}) {
    auto input = rank_tensor(comm->rank(), numel * comm->size(), dtype);
    auto output = torch::full({numel}, 99, dtype);
    for (auto op : {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Product}) {
      comm->reduce_scatter(input, output, op);
      auto expected = expected_reduction(comm->size(), numel * comm->size(), op)
                          .slice(0, comm->rank() * numel, (comm->rank() + 1) * numel);
      EXPECT_LE(max_relative_error(output, expected), tolerance(dtype)) << to_string(op) << " numel " << numel;
    }
  }
}

TEST_P(CommCollectives, CoalescedAllreduceMatchesSeparateOnes) {
  auto dtype = GetParam();
  auto comm = world();
  // Different shapes, one of them empty; each must come back with its own reduction.
  std::vector<torch::Tensor> tensors = {rank_tensor(comm->rank(), 6, dtype).view({2, 3}),
                                        rank_tensor(comm->rank(), 0, dtype),
                                        rank_tensor(comm->rank(), 101, dtype, /*offset=*/1)};
  for (auto op : {ReduceOp::Sum, ReduceOp::Max}) {
    auto copies = tensors;
    for (auto& t : copies) t = t.clone();
    comm->allreduce_coalesced(copies, op);
    EXPECT_EQ(copies[0].sizes(), torch::IntArrayRef({2, 3}));
    EXPECT_LE(max_relative_error(copies[0].view(-1), expected_reduction(comm->size(), 6, op)), tolerance(dtype));
    EXPECT_EQ(copies[1].numel(), 0);
    EXPECT_LE(max_relative_error(copies[2], expected_reduction(comm->size(), 101, op, 1)), tolerance(dtype));
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CommCollectives, ::testing::ValuesIn(all_dtypes()),
                         [](const ::testing::TestParamInfo<c10::ScalarType>& info) { return dtype_name(info.param); });

TEST(CommCollectivesBasic, RankAndSizeMatchTheLauncher) {
  auto comm = world();
  EXPECT_GE(comm->size(), 1);
  EXPECT_GE(comm->rank(), 0);
  EXPECT_LT(comm->rank(), comm->size());
  if (const char* expected = std::getenv("DPTRAIN_TEST_WORLD_SIZE")) {
    EXPECT_EQ(comm->size(), std::atoi(expected));
  }
}

TEST(CommCollectivesBasic, BarrierCompletes) {
  auto comm = world();
  for (int i = 0; i < 3; ++i) comm->barrier();
  auto work = comm->barrier_async();
  work->wait();
  EXPECT_TRUE(work->is_completed());
}

TEST(CommCollectivesBasic, SplitIntoEvenAndOddRanks) {
  auto comm = world();
  const int color = comm->rank() % 2;
  // key = -rank reverses the order inside each group.
  auto group = comm->split(color, -comm->rank());
  ASSERT_NE(group, nullptr);
  const int members = (comm->size() + 1 - color) / 2;  // ranks with this parity
  EXPECT_EQ(group->size(), members);
  // Reversed order: the highest world rank of the group is group rank 0.
  std::vector<int> world_ranks;
  for (int r = color; r < comm->size(); r += 2) world_ranks.push_back(r);
  std::reverse(world_ranks.begin(), world_ranks.end());
  EXPECT_EQ(world_ranks[static_cast<size_t>(group->rank())], comm->rank());
  // A sum over the group adds exactly its members' world ranks.
  auto tensor = torch::full({3}, comm->rank(), torch::TensorOptions(torch::kInt64).device(comm->device()));
  group->allreduce(tensor);
  int64_t expected = 0;
  for (int r : world_ranks) expected += r;
  EXPECT_EQ(tensor[2].item<int64_t>(), expected);
  // The parent keeps working while the group exists.
  auto ones = torch::ones({2}, comm->device());
  comm->allreduce(ones);
  EXPECT_EQ(ones[0].item<float>(), comm->size());
}

TEST(CommCollectivesBasic, SplitWithNegativeColorLeavesRankOut) {
  auto comm = world();
  auto group = comm->split(comm->rank() == 0 ? -1 : 0, 0);
  if (comm->rank() == 0) {
    EXPECT_EQ(group, nullptr);
  } else {
    ASSERT_NE(group, nullptr);
    EXPECT_EQ(group->size(), comm->size() - 1);
    auto t = torch::ones({1}, torch::TensorOptions(torch::kInt32).device(comm->device()));
    group->allreduce(t);
    EXPECT_EQ(t.item<int>(), comm->size() - 1);
  }
}

// Collectives of two communicators, issued in opposite orders on different ranks, complete: every
// communicator progresses on its own thread (or connection). With one thread shared by both,
// rank 0 would sit in A's allreduce waiting for rank 1, which sits in B's waiting for rank 0.
// CTest also runs this binary under DPTRAIN_MPI_THREAD_LEVEL=serialized (mpi_tests_np2_serialized).
TEST(CommCollectivesBasic, CommunicatorsProgressIndependentlyOfEachOther) {
  auto comm = world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  auto a = comm->split(0, comm->rank());
  auto b = comm->split(0, comm->rank());
  a->set_timeout(std::chrono::seconds(30));
  b->set_timeout(std::chrono::seconds(30));
  auto x = torch::ones({1000}, comm->device());
  auto y = torch::full({1000}, 2.0, torch::TensorOptions().device(comm->device()));
  WorkPtr on_a, on_b;
  if (comm->rank() % 2 == 0) {
    on_a = a->allreduce_async(x);
    on_b = b->allreduce_async(y);
  } else {
    on_b = b->allreduce_async(y);
    on_a = a->allreduce_async(x);
  }
  on_a->wait();
  on_b->wait();
  EXPECT_EQ(x[999].item<float>(), comm->size());
  EXPECT_EQ(y[999].item<float>(), 2.0f * comm->size());
}

}  // namespace
}  // namespace dpt::testing
