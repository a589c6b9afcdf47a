// MpiCommunicator with CUDA tensors (staged through pinned host memory). Skipped without a GPU.
#include <gtest/gtest.h>

#include "communicator_test_util.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

TEST(CommMpiCuda, CollectivesOnCudaTensors_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto comm = world();
  if (comm->backend_name() != "mpi") GTEST_SKIP() << "MPI backend only";
  const int n = comm->size();
  torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(comm->local_rank() % torch::cuda::device_count()));
  for (auto dtype : all_dtypes()) {
    auto t = rank_tensor(comm->rank(), 999, dtype).to(device);
    comm->allreduce(t, ReduceOp::Sum);
    EXPECT_TRUE(t.is_cuda());
    EXPECT_LE(max_relative_error(t, expected_reduction(n, 999, ReduceOp::Sum)), tolerance(dtype));
    auto b = rank_tensor(comm->rank(), 10, dtype).to(device);
    comm->broadcast(b, n - 1);
    EXPECT_TRUE(b.cpu().equal(rank_tensor(n - 1, 10, dtype)));
    auto out = torch::empty({10 * n}, torch::TensorOptions(dtype).device(device));
    comm->allgather(rank_tensor(comm->rank(), 10, dtype).to(device), out);
    EXPECT_TRUE(out.slice(0, 0, 10).cpu().equal(rank_tensor(0, 10, dtype)));
  }
  // Work queued on the current stream after wait() sees the result.
  auto x = torch::ones({1 << 16}, device);
  auto work = comm->allreduce_async(x);
  work->wait();
  EXPECT_EQ((x * 2).sum().item<double>(), 2.0 * n * (1 << 16));
}

}  // namespace
}  // namespace dpt::testing
