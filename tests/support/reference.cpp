#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/parallel/runtime/launch_info.h"
#include "dptrain/parallel/runtime/runtime.h"

#include "test_support.h"

namespace dpt::testing {
namespace {

std::unique_ptr<dpt::Runtime>& runtime_slot() {
  static std::unique_ptr<dpt::Runtime> runtime;  // reset by run_all_tests, never by a static destructor
  return runtime;
}

// Ranks other than 0: print failures only, prefixed with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

CommunicatorPtr world() {
  auto& runtime = runtime_slot();
  if (!runtime) {
    dpt::RuntimeOptions options;
    // Tests that hang should fail well inside CTest's limit: 120 s unless DPTRAIN_TIMEOUT says otherwise.
    if (!std::getenv("DPTRAIN_TIMEOUT")) options.timeout = std::chrono::seconds(120);
    // The multi-rank tests run on the CPU with a CPU backend even on a machine with GPUs, unless
    // DPTRAIN_BACKEND / DPTRAIN_DEVICE ask otherwise: scripts/gpu/build-and-test.sh runs them on
    // the GPU (nccl at world size 1, mpi on CUDA at world size 2), where test_device() is CUDA.
    if (!std::getenv("DPTRAIN_BACKEND")) options.backend = dpt::detect_launch().launcher == "torchrun" ? "store" : "mpi";
    if (!std::getenv("DPTRAIN_DEVICE")) options.device = "cpu";
    runtime = std::make_unique<dpt::Runtime>(options);
  }
  return runtime->world();
}

int run_all_tests() {
  // Equivalence tests on a GPU compare float32 results with a CPU reference: no TF32 rounding.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto launch = dpt::detect_launch();
  const bool multi_rank = launch.launcher != "none";
  if (multi_rank) {
    world();  // before any test, so every rank joins at the same point
    if (launch.rank != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new FailurePrinter(launch.rank));
    }
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  if (runtime_slot()) {
    auto comm = runtime_slot()->world();
    try {
      auto flag = torch::full({1}, failed, torch::TensorOptions(torch::kInt32).device(comm->device()));
      comm->allreduce(flag, dpt::ReduceOp::Max);
      failed = flag.cpu().item<int>();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[rank %d] cannot agree on the test outcome: %s\n", comm->rank(), e.what());
      std::fflush(stderr);
      std::_Exit(1);  // a broken communicator: finalising would hang
    }
    comm.reset();
    runtime_slot().reset();
  }
  return failed;
}

double max_relative_error(const torch::Tensor& actual, const torch::Tensor& expected) {
  auto a = actual.detach().to(torch::kCPU, torch::kDouble);
  auto e = expected.detach().to(torch::kCPU, torch::kDouble);
  if (a.numel() == 0) return 0.0;
  auto denominator = e.abs().clamp_min(1.0);
  return ((a - e).abs() / denominator).max().item<double>();
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* previous = std::getenv(name)) {
    had_value_ = true;
    previous_ = previous;
  }
  setenv(name, value, 1);
}

ScopedEnv::~ScopedEnv() {
  if (had_value_) {
    setenv(name_.c_str(), previous_.c_str(), 1);
  } else {
    unsetenv(name_.c_str());
  }
}

CommunicatorPtr checked_world() {
  auto comm = world();
  ScopedEnv check("DPTRAIN_CHECK_COLLECTIVES", "1");
  return comm->split(0, comm->rank());
}

torch::Device test_device() { return world()->device(); }

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const dpt::Error& e) {
    return e.what();
  }
  return "";
}

TempDir::TempDir(const std::string& prefix) : path_(dpt::fs::make_temp_directory(prefix)) {}

TempDir::~TempDir() { dpt::fs::remove_all(path_); }

}  // namespace dpt::testing
