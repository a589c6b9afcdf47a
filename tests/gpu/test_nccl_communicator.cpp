// NcclCommunicator and MPI with CUDA tensors, in one process (world size 1 without a launcher;
// multi-GPU runs use `scripts/dpt-mpirun -np N build/tests/gpu_tests`). Skipped without a device.
#include <gtest/gtest.h>

#include "dptrain/core/config.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/runtime/launch_info.h"
#include "dptrain/parallel/runtime/runtime.h"
#if DPTRAIN_HAVE_NCCL
#include "dptrain/parallel/nccl/nccl_communicator.h"
#endif

namespace dpt {
namespace {

#if DPTRAIN_HAVE_NCCL
TEST(NcclCommunicator, CollectivesOnTheRanksDevice_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto launch = detect_launch();
  torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank % torch::cuda::device_count()));
  auto comm = NcclCommunicator::create_world(launch, device, std::chrono::seconds(60));
  const int n = comm->size();
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kFloat16, torch::kBFloat16, torch::kInt32,
                     torch::kInt64, torch::kUInt8}) {
    auto t = torch::full({1000}, comm->rank() + 1, torch::TensorOptions(dtype).device(device));
    comm->allreduce(t);
    EXPECT_EQ(t.to(torch::kCPU, torch::kDouble)[999].item<double>(), n * (n + 1) / 2.0) << c10::toString(dtype);
    auto b = torch::full({17}, comm->rank(), torch::TensorOptions(dtype).device(device));
    comm->broadcast(b, n - 1);
    EXPECT_EQ(b.to(torch::kCPU, torch::kDouble)[3].item<double>(), n - 1.0);
    auto out = torch::empty({5 * n}, torch::TensorOptions(dtype).device(device));
    comm->allgather(torch::full({5}, comm->rank(), torch::TensorOptions(dtype).device(device)), out);
    EXPECT_EQ(out.to(torch::kCPU, torch::kDouble)[5 * (n - 1)].item<double>(), n - 1.0);
  }
  auto avg = torch::full({8}, static_cast<float>(comm->rank()), torch::TensorOptions(torch::kFloat32).device(device));
  comm->allreduce(avg, ReduceOp::Avg);
  EXPECT_FLOAT_EQ(avg[0].item<float>(), (n - 1) / 2.0f);
  auto cpu = torch::ones({4});
  EXPECT_THROW(comm->allreduce(cpu), InvalidArgumentError);
  comm->barrier();
}

TEST(NcclCommunicator, ObjectCollectivesGoThroughTheDevice_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto launch = detect_launch();
  torch::Device device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch.local_rank % torch::cuda::device_count()));
  auto comm = NcclCommunicator::create_world(launch, device, std::chrono::seconds(60));
  NamedTensors state{{"w", torch::arange(6, torch::kFloat32)}};
  auto got = comm->broadcast_named_tensors(comm->rank() == 0 ? state : NamedTensors{}, 0);
  EXPECT_TRUE(got.at("w").equal(state.at("w")));
}
#endif

}  // namespace
}  // namespace dpt
