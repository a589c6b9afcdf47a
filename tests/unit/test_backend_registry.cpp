// The backend registry (parallel/src/runtime/backend_registry.h): each backend folder registers
// itself, and choosing by preference picks what the runtime's documented rule says (runtime.h,
// step 3) - nccl with a CUDA device, store for a torchrun-style launch, else mpi.
#include <gtest/gtest.h>

#include <string>

#include "dptrain/core/config.h"
#include "dptrain/core/error.h"
#include "runtime/backend_registry.h"

namespace dpt::detail {
namespace {

BackendContext context(const std::string& launcher, const torch::Device& device) {
  BackendContext context;
  context.launch.launcher = launcher;
  context.device = device;
  context.mpi_launch = DPTRAIN_HAVE_MPI && (launcher == "mpi" || launcher == "slurm" || launcher == "none");
  return context;
}

template <typename ErrorType>
std::string error_of(const std::string& requested, const BackendContext& context) {
  try {
    choose_backend(requested, context);
  } catch (const ErrorType& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << requested;
  return "";
}

TEST(BackendRegistry, EachBuiltBackendRegistersItself) {
  EXPECT_NE(find_backend("store"), nullptr);
  EXPECT_EQ(find_backend("mpi") != nullptr, bool(DPTRAIN_HAVE_MPI));
  EXPECT_EQ(find_backend("nccl") != nullptr, bool(DPTRAIN_HAVE_NCCL));
  EXPECT_EQ(find_backend("gloo"), nullptr);
  EXPECT_NE(backend_names().find("store"), std::string::npos) << backend_names();
}

TEST(BackendRegistry, AutomaticChoiceFollowsTheLaunchAndTheDevice) {
  EXPECT_EQ(choose_backend("", context("torchrun", torch::kCPU)).name, "store");
  EXPECT_EQ(choose_backend("auto", context("mpi", torch::kCPU)).name, DPTRAIN_HAVE_MPI ? "mpi" : "store");
  EXPECT_EQ(choose_backend("", context("none", torch::kCPU)).name, DPTRAIN_HAVE_MPI ? "mpi" : "store");
  if (DPTRAIN_HAVE_NCCL) {
    EXPECT_EQ(choose_backend("", context("torchrun", torch::Device(torch::kCUDA, 0))).name, "nccl");
    EXPECT_EQ(choose_backend("", context("mpi", torch::Device(torch::kCUDA, 0))).name, "nccl");
  }
}

TEST(BackendRegistry, ABackendThatCannotServeSaysWhy) {
  if (DPTRAIN_HAVE_NCCL) {
    auto message = error_of<UnsupportedError>("nccl", context("mpi", torch::kCPU));
    EXPECT_NE(message.find("needs a CUDA device"), std::string::npos) << message;
  }
  if (DPTRAIN_HAVE_MPI) {
    auto message = error_of<UnsupportedError>("mpi", context("torchrun", torch::kCPU));
    EXPECT_NE(message.find("needs an MPI launch"), std::string::npos) << message;
  }
  auto unknown = error_of<InvalidArgumentError>("carrier-pigeon", context("none", torch::kCPU));
  EXPECT_NE(unknown.find("use " + backend_names()), std::string::npos) << unknown;
  EXPECT_EQ(choose_backend("store", context("mpi", torch::kCPU)).name, "store");  // any launch
}

}  // namespace
}  // namespace dpt::detail
