// Helpers shared by the tests.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt::testing {

// The world communicator of this test process. In a binary run under mpirun (the mpi tests) the
// Runtime is created in main before any test; anywhere else on first use (world size 1 without a
// launcher). Tests that need several ranks: if (world()->size() < 2) GTEST_SKIP() << "...";
CommunicatorPtr world();

// Runs RUN_ALL_TESTS, bracketed by the world set-up and tear-down when this is a multi-rank run.
int run_all_tests();

// Max |a - b| / max(1, |b|) over all elements; the tolerance measure used by equivalence tests.
double max_relative_error(const torch::Tensor& actual, const torch::Tensor& expected);

// The message of the dpt::Error that `body` throws; "" when it throws none.
std::string error_of(const std::function<void()>& body);

// `count` CPU devices: DataParallel's replicas all on the host.
inline std::vector<torch::Device> cpus(size_t count) {
  return std::vector<torch::Device>(count, torch::Device(torch::kCPU));
}

// A directory under /tmp removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "dpt-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Sets an environment variable for the object's lifetime, then restores the previous value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_value_ = false;
  std::string previous_;
};

// A communicator over the same ranks as world() that runs the cross-rank call check (created under
// DPTRAIN_CHECK_COLLECTIVES=1; collective over every rank).
CommunicatorPtr checked_world();

// The device the tests' tensors and models go to: world()->device() (cpu, or the rank's GPU when
// the world communicator is NCCL or MPI on CUDA).
torch::Device test_device();

}  // namespace dpt::testing
