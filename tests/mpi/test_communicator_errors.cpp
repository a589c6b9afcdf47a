// Bad arguments and calls that disagree across ranks: a clear error on every rank, and the
// communicator still works afterwards.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "dptrain/core/error.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

template <typename ErrorType, typename Body>
std::string expect_error(Body&& body) {
  try {
    body();
  } catch (const ErrorType& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no exception";
  return "";
}

void expect_still_usable(const CommunicatorPtr& comm) {
  auto t = torch::ones({3}, comm->device());
  comm->allreduce(t);
  EXPECT_EQ(t[1].item<float>(), static_cast<float>(comm->size()));
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(CommErrors, NonContiguousTensorIsRejected) {
  auto comm = world();
  auto t = torch::ones({4, 3}, comm->device()).t();
  auto message = expect_error<InvalidArgumentError>([&] { comm->allreduce(t); });
  EXPECT_TRUE(contains(message, "not contiguous")) << message;
  EXPECT_TRUE(contains(message, "rank " + std::to_string(comm->rank()))) << message;
  expect_still_usable(comm);
}

TEST(CommErrors, WrongDeviceIsRejected) {
  auto comm = world();
  auto t = torch::empty({4}, torch::TensorOptions().device(torch::kMeta));
  auto message = expect_error<InvalidArgumentError>([&] { comm->broadcast(t, 0); });
  EXPECT_TRUE(contains(message, "is on meta")) << message;
  EXPECT_TRUE(contains(message, "works on " + comm->device().str())) << message;
  expect_still_usable(comm);
}

// Where the rank trains on a GPU every collective takes the GPU's tensors only (NCCL, and MPI on
// CUDA): a CPU tensor is a clear error, not a crash inside the library.
TEST(CommErrors, CpuTensorOnADeviceCommunicatorIsRejected) {
  auto comm = world();
  if (comm->device().is_cpu()) GTEST_SKIP() << "the communicator works on the CPU";
  auto t = torch::ones({4});
  auto message = expect_error<InvalidArgumentError>([&] { comm->allreduce(t); });
  EXPECT_TRUE(contains(message, "is on cpu but this communicator works on " + comm->device().str())) << message;
  expect_still_usable(comm);
}

TEST(CommErrors, CallCheckRunsOnlyWhenAskedFor) {
  auto comm = world();
  if (!std::getenv("DPTRAIN_DEBUG") && !std::getenv("DPTRAIN_CHECK_COLLECTIVES")) {
    EXPECT_FALSE(comm->checks_calls()) << "the cross-rank call check costs a collective per call: DETAIL only";
  }
  {
    ScopedEnv detail("DPTRAIN_DEBUG", "DETAIL");
    auto split = comm->split(0, comm->rank());
    if (!std::getenv("DPTRAIN_CHECK_COLLECTIVES")) {
      EXPECT_TRUE(split->checks_calls());
    }
  }
  EXPECT_TRUE(checked_world()->checks_calls());
}

TEST(CommErrors, UnsupportedDtypeIsRejected) {
  auto comm = world();
  auto t = torch::ones({4}, torch::kBool);
  auto message = expect_error<InvalidArgumentError>([&] { comm->allreduce(t); });
  EXPECT_TRUE(contains(message, "dtype Bool")) << message;
}

TEST(CommErrors, BadShapesAndRootsAreRejected) {
  auto comm = world();
  auto input = torch::ones({4}, comm->device());
  auto wrong = torch::ones({4 * comm->size() + 1}, comm->device());
  expect_error<InvalidArgumentError>([&] { comm->allgather(input, wrong); });
  expect_error<InvalidArgumentError>([&] { comm->reduce_scatter(wrong, input); });
  auto as_double = torch::ones({4 * comm->size()}, torch::TensorOptions(torch::kDouble).device(comm->device()));
  expect_error<InvalidArgumentError>([&] { comm->allgather(input, as_double); });
  expect_error<InvalidArgumentError>([&] { comm->broadcast(input, comm->size()); });
  expect_error<InvalidArgumentError>([&] { comm->broadcast(input, -1); });
  std::vector<torch::Tensor> mixed = {torch::ones({2}, comm->device()), as_double};
  expect_error<InvalidArgumentError>([&] { comm->allreduce_coalesced(mixed); });
  expect_still_usable(comm);
}

TEST(CommErrors, MismatchedElementCountsFailOnEveryRank) {
  auto comm = checked_world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  auto t = torch::ones({comm->rank() == 0 ? 5 : 6}, comm->device());
  auto message = expect_error<CommunicationError>([&] { comm->allreduce(t); });
  EXPECT_TRUE(contains(message, "ranks disagree on the element count (5 .. 6)")) << message;
  EXPECT_EQ(t[0].item<float>(), 1.0f) << "the tensor must be left untouched";
  expect_still_usable(comm);
}

TEST(CommErrors, MismatchedDtypesFailOnEveryRank) {
  auto comm = checked_world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  auto t = torch::ones({5}, torch::TensorOptions(comm->rank() == 0 ? torch::kFloat32 : torch::kFloat64)
                                .device(comm->device()));
  auto message = expect_error<CommunicationError>([&] { comm->allreduce(t); });
  EXPECT_TRUE(contains(message, "ranks disagree on the dtype")) << message;
  expect_still_usable(comm);
}

TEST(CommErrors, MismatchedOpsAndCollectivesFailOnEveryRank) {
  auto comm = checked_world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  auto t = torch::ones({5}, comm->device());
  auto message =
      expect_error<CommunicationError>([&] { comm->allreduce(t, comm->rank() == 0 ? ReduceOp::Sum : ReduceOp::Max); });
  EXPECT_TRUE(contains(message, "ranks disagree on the reduce op (sum vs max)")) << message;
  message = expect_error<CommunicationError>([&] {
    if (comm->rank() == 0) {
      comm->broadcast(t, 0);
    } else {
      comm->allreduce(t);
    }
  });
  EXPECT_TRUE(contains(message, "ranks disagree on the collective (allreduce vs broadcast)")) << message;
  message = expect_error<CommunicationError>([&] { comm->broadcast(t, comm->rank() == 0 ? 0 : 1); });
  EXPECT_TRUE(contains(message, "ranks disagree on the root")) << message;
  expect_still_usable(comm);
}

TEST(CommErrors, ZeroElementTensorsWork) {
  auto comm = world();
  auto empty = torch::empty({0, 3}, comm->device());
  comm->allreduce(empty);
  comm->broadcast(empty, 0);
  auto output = torch::empty({0}, comm->device());
  comm->allgather(empty, output);
  auto work = comm->allreduce_async(empty, ReduceOp::Avg);
  work->wait();
  EXPECT_TRUE(work->is_completed());
  expect_still_usable(comm);
}

}  // namespace
}  // namespace dpt::testing
