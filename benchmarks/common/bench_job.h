// What a distributed benchmark starts with, written once (the nccl-tests shape: a harness that
// brings up the job, and per benchmark only what it measures):
//
//   dpt::bench::BenchJob job(options.common, "mpi");   // threads, device check, Runtime, device
//   ... measure on job.comm ...
//   nlohmann::json document = job.document("ddp");     // benchmark, framework, device, world, machine
//   dpt::bench::max_over_ranks(*job.comm, samples);    // a synchronous step is its slowest rank's
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "bench_options.h"
#include "dptrain/parallel/runtime/runtime.h"

namespace dpt::bench {

class BenchJob {
 public:
  // Applies --threads (before any tensor work), checks --device, starts the Runtime with `backend`
  // ("" for its own choice) and checks that its device is of the kind --device asked for.
  BenchJob(const CommonOptions& common, const std::string& backend);

  const ThreadSetup threads;
  std::unique_ptr<Runtime> runtime;
  CommunicatorPtr comm;
  torch::Device device{torch::kCPU};  // the rank's GPU under --device cuda, else the CPU
  int rank = 0;
  int world_size = 1;

  // The result file's head: benchmark, framework, device, world_size, threads, warmup, iters, machine.
  nlohmann::json document(const std::string& benchmark) const;
  // Blocks until the device has finished the work queued so far (a no-op on the CPU).
  void synchronize() const;

 private:
  const CommonOptions& common_;
};

// values[i] = max over ranks of values[i], on every rank.
void max_over_ranks(Communicator& comm, std::vector<double>& values);

// FILE for rank 0, FILE with ".rank<r>" before its extension for rank r.
std::string rank_file(const std::string& path, int rank);

}  // namespace dpt::bench
