// dpt::Runtime refuses unavailable or unknown backends and bad timeouts with one clear error,
// before it initialises MPI or touches a device.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "dptrain/core/error.h"
#include "dptrain/parallel/runtime/runtime.h"

namespace dpt {
namespace {

template <typename ErrorType>
std::string runtime_error_with(const RuntimeOptions& options) {
  try {
    Runtime runtime(options);
  } catch (const ErrorType& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(RuntimeOptions, UnknownBackendIsAnInvalidArgument) {
  RuntimeOptions options;
  options.backend = "carrier-pigeon";
  auto message = runtime_error_with<InvalidArgumentError>(options);
  EXPECT_NE(message.find("backend 'carrier-pigeon'"), std::string::npos) << message;
}

TEST(RuntimeOptions, GlooIsUnsupportedAndSaysWhy) {
  RuntimeOptions options;
  options.backend = "gloo";
  auto message = runtime_error_with<UnsupportedError>(options);
  EXPECT_NE(message.find("gloo headers"), std::string::npos) << message;
}

TEST(RuntimeOptions, NcclWithoutADeviceIsUnsupported) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a CUDA device";
  RuntimeOptions options;
  options.backend = "nccl";
  auto message = runtime_error_with<UnsupportedError>(options);
  EXPECT_NE(message.find("needs a CUDA device"), std::string::npos) << message;
}

TEST(RuntimeOptions, TimeoutResolution) {
  EXPECT_EQ(Runtime::resolve_timeout(std::chrono::milliseconds(1500)).count(), 1500);
  unsetenv("DPTRAIN_TIMEOUT");
  EXPECT_EQ(Runtime::resolve_timeout(std::chrono::milliseconds(0)).count(), 300000);
  setenv("DPTRAIN_TIMEOUT", "45", 1);
  EXPECT_EQ(Runtime::resolve_timeout(std::chrono::milliseconds(0)).count(), 45000);
  setenv("DPTRAIN_TIMEOUT", "soon", 1);
  EXPECT_THROW(Runtime::resolve_timeout(std::chrono::milliseconds(0)), InvalidArgumentError);
  setenv("DPTRAIN_TIMEOUT", "0", 1);
  EXPECT_THROW(Runtime::resolve_timeout(std::chrono::milliseconds(0)), InvalidArgumentError);
  unsetenv("DPTRAIN_TIMEOUT");
  EXPECT_THROW(Runtime::resolve_timeout(std::chrono::milliseconds(-1)), InvalidArgumentError);
}

}  // namespace
}  // namespace dpt
