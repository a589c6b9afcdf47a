// allreduce_bench: dptrain's all-reduce against the raw library call it wraps, size by size.
//
//   scripts/dpt-mpirun -np 2 build/bin/allreduce_bench --min-bytes 4K --max-bytes 256M --json out.json
//   build/bin/allreduce_bench --backend nccl --device cuda            (one GPU, or one per rank)
//
// For every size and dtype, in the same run and on the same buffer, it times
//   ours    - Communicator::allreduce (the path DDP takes: queue, progress thread, the per-op
//             fingerprint check that all ranks agree on dtype/count, wait);
//   ours_nocheck - the same on a second MPI communicator created with DPTRAIN_CHECK_COLLECTIVES=0
//             (backend mpi only): what that safety check costs, size by size;
//   raw_mpi - MPI_Allreduce(MPI_IN_PLACE, ...) called directly on a duplicate of MPI_COMM_WORLD,
//             with the library's datatypes and ops (MpiCommunicator::datatype; 16-bit floats too)
//             (for CUDA tensors: staged through host memory, which is what a non-CUDA-aware MPI
//             needs; for NCCL it is listed as a reference only, without a ratio).
// Iterations alternate ours/raw so both see the same machine noise. Each sample is the time of
// `inner` back-to-back operations divided by `inner` (inner is large for small messages, where
// one operation is shorter than the clock's and the barrier's jitter), and its value is the
// maximum over ranks (the collective is as slow as its slowest rank).
// Bandwidths follow nccl-tests (doc/PERFORMANCE.md there; docs/benchmarks.md here):
//   algbw = bytes / time;   busbw = algbw * 2 (n - 1) / n   (the per-link traffic of a ring)
// Before timing, every size is checked: rank r fills r + 1, the result must be n (n + 1) / 2.
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "bench_job.h"
#include "bench_options.h"
#include "dptrain/core/config.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/comm_hooks/hierarchical_allreduce.h"
#include "dptrain/parallel/mpi/mpi_communicator.h"
#include "dptrain/parallel/runtime/runtime.h"
#include "json_output.h"
#include "stats.h"
#include "timing.h"

#if DPTRAIN_HAVE_MPI
#include <mpi.h>
#endif

namespace {

using dpt::bench::Clock;

struct Options {
  dpt::bench::CommonOptions common;
  std::string backend = "mpi";
  std::vector<std::string> dtypes = {"float32"};
  std::string min_bytes = "4K";
  std::string max_bytes = "256M";
  int step_factor = 4;
  bool raw = true;
  bool check = true;
  bool check_cost = true;
  double target_sample_ms = 2.0;
  bool hierarchical = false;  // also the host-aware all-reduce (a candidate "hierarchical")
};

// "4K" -> 4096, "256M" -> 268435456, "1G", plain numbers; binary units as nccl-tests uses them.
int64_t parse_bytes(const std::string& text, const char* option) {
  DPT_CHECK(!text.empty(), InvalidArgumentError, option, " is empty");
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    DPT_THROW(InvalidArgumentError, option, " '", text, "' is not a size (examples: 4096, 4K, 64M, 1G)");
  }
  std::string unit = text.substr(used);
  double scale = 1;
  if (unit == "K" || unit == "KB" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "MB") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB") scale = 1024.0 * 1024 * 1024;
  else DPT_CHECK(unit.empty() || unit == "B", InvalidArgumentError, option, " '", text, "': unknown unit '", unit, "' (use K, M or G)");
  DPT_CHECK(value > 0, InvalidArgumentError, option, " must be > 0, got '", text, "'");
  return static_cast<int64_t>(value * scale);
}

torch::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "float64") return torch::kFloat64;
  if (name == "float16") return torch::kFloat16;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "int32") return torch::kInt32;
  if (name == "int64") return torch::kInt64;
  if (name == "uint8") return torch::kUInt8;
  DPT_THROW(InvalidArgumentError, "--dtype '", name, "' is not one of float32, float64, float16, bfloat16, int32, int64, uint8");
}

std::string human_bytes(int64_t bytes) {
  char text[32];
  if (bytes >= (int64_t(1) << 30)) std::snprintf(text, sizeof text, "%lldG", static_cast<long long>(bytes >> 30));
  else if (bytes >= (int64_t(1) << 20)) std::snprintf(text, sizeof text, "%lldM", static_cast<long long>(bytes >> 20));
  else if (bytes >= 1024) std::snprintf(text, sizeof text, "%lldK", static_cast<long long>(bytes >> 10));
  else std::snprintf(text, sizeof text, "%lld", static_cast<long long>(bytes));
  return text;
}

// The job-wide helpers this benchmark needs besides the communicator under test: a barrier and a
// max over ranks. Raw MPI on its own duplicate of MPI_COMM_WORLD, so its messages never mix with
// the communicator's.
class BenchControl {
 public:
  explicit BenchControl(int world_size) : world_size_(world_size) {
#if DPTRAIN_HAVE_MPI
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
#endif
    DPT_CHECK(world_size == 1 || has_mpi(), UnsupportedError,
              "allreduce_bench needs MPI for world size ", world_size, ": launch it with scripts/dpt-mpirun");
  }
  ~BenchControl() {
#if DPTRAIN_HAVE_MPI
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
#endif
  }
  bool has_mpi() const {
#if DPTRAIN_HAVE_MPI
    return comm_ != MPI_COMM_NULL;
#else
    return false;
#endif
  }
  void barrier() {
#if DPTRAIN_HAVE_MPI
    if (has_mpi()) MPI_Barrier(comm_);
#endif
  }
  void max_over_ranks(std::vector<double>& values) {
#if DPTRAIN_HAVE_MPI
    if (has_mpi() && world_size_ > 1)
      MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_MAX, comm_);
#endif
  }
  void sum_over_ranks(std::vector<long long>& values) {
#if DPTRAIN_HAVE_MPI
    if (has_mpi() && world_size_ > 1)
      MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_LONG_LONG, MPI_SUM, comm_);
#endif
  }
#if DPTRAIN_HAVE_MPI
  MPI_Comm comm() const { return comm_; }
#endif

 private:
  int world_size_;
#if DPTRAIN_HAVE_MPI
  MPI_Comm comm_ = MPI_COMM_NULL;
#endif
};

struct Candidate {
  std::string name;
  std::function<void(torch::Tensor&)> allreduce;  // in place, sum, blocking until readable
};

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Elements of `tensor` that differ from the expected sum after one all-reduce of (rank + 1).
long long count_wrong(Candidate& candidate, torch::Tensor& tensor, int rank, int world_size) {
  tensor.fill_(rank + 1);
  candidate.allreduce(tensor);
  synchronize(tensor.device());
  const double expected = world_size * (world_size + 1) / 2.0;
  auto wrong = static_cast<long long>(tensor.to(torch::kFloat64).ne(expected).sum().item<int64_t>());
  tensor.zero_();
  return wrong;
}

nlohmann::json measure_size(const Options& options, BenchControl& control, std::vector<Candidate>& candidates,
                            int64_t bytes, const std::string& dtype_name, const torch::Device& device, int rank,
                            int world_size) {
  const torch::ScalarType dtype = parse_dtype(dtype_name);
  const int64_t element_size = static_cast<int64_t>(c10::elementSize(dtype));
  const int64_t count = std::max<int64_t>(1, bytes / element_size);
  const int64_t actual_bytes = count * element_size;
  // Zeros: a sum of zeros stays zero however often it runs (no overflow, no denormals).
  torch::Tensor tensor = torch::zeros({count}, torch::TensorOptions().dtype(dtype).device(device));

  nlohmann::json row = {{"bytes", actual_bytes}, {"count", count}, {"dtype", dtype_name}};
  std::vector<long long> wrong(candidates.size(), 0);
  if (options.check) {
    for (size_t i = 0; i < candidates.size(); ++i) wrong[i] = count_wrong(candidates[i], tensor, rank, world_size);
    control.sum_over_ranks(wrong);
  }

  // inner: enough back-to-back operations that one sample lasts about target_sample_ms, measured
  // from one probe operation (max over ranks, so every rank picks the same inner).
  std::vector<double> probe(1, 0.0);
  control.barrier();
  auto start = Clock::now();
  candidates.front().allreduce(tensor);
  synchronize(device);
  probe[0] = dpt::bench::seconds_since(start);
  control.max_over_ranks(probe);
  const int inner = static_cast<int>(std::clamp(options.target_sample_ms * 1e-3 / std::max(probe[0], 1e-7), 1.0, 200.0));

  std::vector<std::vector<double>> samples(candidates.size());
  const int total = options.common.warmup + options.common.iters;
  for (int iteration = 0; iteration < total; ++iteration) {
    for (size_t i = 0; i < candidates.size(); ++i) {
      control.barrier();
      start = Clock::now();
      for (int k = 0; k < inner; ++k) candidates[i].allreduce(tensor);
      synchronize(device);
      const double per_op = dpt::bench::seconds_since(start) / inner;
      if (iteration >= options.common.warmup) samples[i].push_back(per_op);
    }
  }

  row["inner"] = inner;
  const double bus_factor = world_size > 1 ? 2.0 * (world_size - 1) / world_size : 0.0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    control.max_over_ranks(samples[i]);
    auto stats = dpt::bench::summarize(samples[i]);
    const double algbw = actual_bytes / stats.median / 1e9;
    row[candidates[i].name] = {{"time_s", dpt::bench::to_json(stats)},
                               {"algbw_gbps", algbw},
                               {"busbw_gbps", algbw * bus_factor},
                               {"wrong", options.check ? nlohmann::json(wrong[i]) : nlohmann::json(nullptr)}};
  }
  if (row.contains("ours") && row.contains("raw_mpi") && options.backend == "mpi") {
    // Ratio of bandwidths = inverse ratio of median times; > 1 means ours is faster.
    row["ours_over_raw"] = row["raw_mpi"]["time_s"]["median"].get<double>() / row["ours"]["time_s"]["median"].get<double>();
    // The same from the fastest sample of each: robust when other processes share the cores.
    row["ours_over_raw_best"] = row["raw_mpi"]["time_s"]["min"].get<double>() / row["ours"]["time_s"]["min"].get<double>();
  }
  return row;
}

std::optional<int> parse_options(int argc, char** argv, Options& options) {
  options.common.warmup = 5;
  CLI::App app{"allreduce_bench: dptrain's all-reduce vs raw MPI_Allreduce, time / algbw / busbw by size"};
  dpt::bench::add_common_options(app, options.common);
  app.add_option("--backend", options.backend, "communicator under test")
      ->check(CLI::IsMember({"mpi", "nccl"}))
      ->capture_default_str();
  app.add_option("--dtype", options.dtypes, "element types (several allowed)")->capture_default_str();
  app.add_option("--min-bytes", options.min_bytes, "smallest message (4K, 1M, ...)")->capture_default_str();
  app.add_option("--max-bytes", options.max_bytes, "largest message")->capture_default_str();
  app.add_option("--step-factor", options.step_factor, "size multiplier between rows (2 or 4)")
      ->check(CLI::Range(2, 16))
      ->capture_default_str();
  app.add_flag("!--no-raw", options.raw, "skip the raw MPI_Allreduce reference");
  app.add_flag("!--no-check", options.check, "skip the correctness check of every size");
  app.add_flag("!--no-check-cost", options.check_cost,
               "skip ours_nocheck (the communicator without its per-op fingerprint check)");
  app.add_flag("--hierarchical", options.hierarchical,
               "also dpt::HierarchicalAllreduce (hosts from the hostnames; flat on one host)");
  app.add_option("--target-sample-ms", options.target_sample_ms,
                 "back-to-back operations per sample so that one sample lasts about this long")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  if (auto code = dpt::bench::parse(app, argc, argv)) return code;
  DPT_CHECK(parse_bytes(options.min_bytes, "--min-bytes") <= parse_bytes(options.max_bytes, "--max-bytes"),
            InvalidArgumentError, "--min-bytes (", options.min_bytes, ") is larger than --max-bytes (",
            options.max_bytes, ")");
  for (const auto& name : options.dtypes) parse_dtype(name);  // bad names fail before any work
  DPT_CHECK(options.backend != "nccl" || options.common.device == "cuda", InvalidArgumentError,
            "--backend nccl needs --device cuda");
  return std::nullopt;
}

// What is timed for one dtype: ours, and where asked and possible the unchecked twin, the
// hierarchical all-reduce and raw MPI.
struct Communicators {
  dpt::CommunicatorPtr ours;
  dpt::CommunicatorPtr unchecked;  // the same backend without the per-collective fingerprint check
  std::shared_ptr<dpt::HierarchicalAllreduce> hierarchical;
};

Communicators open_communicators(const Options& options, const dpt::bench::BenchJob& job) {
  Communicators comms{job.comm, nullptr, nullptr};
#if DPTRAIN_HAVE_MPI
  if (options.backend == "mpi" && options.check_cost) {
    auto previous = dpt::env::get("DPTRAIN_CHECK_COLLECTIVES");
    setenv("DPTRAIN_CHECK_COLLECTIVES", "0", 1);
    comms.unchecked = dpt::MpiCommunicator::create_world(job.comm->local_rank(), job.runtime->timeout());
    if (previous) setenv("DPTRAIN_CHECK_COLLECTIVES", previous->c_str(), 1);
    else unsetenv("DPTRAIN_CHECK_COLLECTIVES");
  }
#endif
  if (options.hierarchical) comms.hierarchical = std::make_shared<dpt::HierarchicalAllreduce>(job.comm);
  return comms;
}

std::vector<Candidate> candidates_for(const Options& options, const Communicators& comms, BenchControl& control,
                                      torch::ScalarType dtype) {
  std::vector<Candidate> candidates;
  candidates.push_back({"ours", [comm = comms.ours](torch::Tensor& t) { comm->allreduce(t); }});
  if (comms.unchecked) {
    candidates.push_back({"ours_nocheck", [comm = comms.unchecked](torch::Tensor& t) { comm->allreduce(t); }});
  }
  if (comms.hierarchical) {
    candidates.push_back({"hierarchical", [h = comms.hierarchical](torch::Tensor& t) { h->allreduce_async(t)->wait(); }});
  }
#if DPTRAIN_HAVE_MPI
  if (options.raw && control.has_mpi()) {
    MPI_Comm raw_comm = control.comm();
    const MPI_Datatype type = dpt::MpiCommunicator::datatype(dtype);
    const MPI_Op op = dpt::MpiCommunicator::reduce_op(dpt::ReduceOp::Sum, dtype);
    candidates.push_back({"raw_mpi", [raw_comm, type, op](torch::Tensor& t) {
                            // CUDA tensors staged: what an MPI without CUDA support needs.
                            torch::Tensor host = t.is_cuda() ? t.cpu() : t;
                            MPI_Allreduce(MPI_IN_PLACE, host.data_ptr(), static_cast<int>(host.numel()), type, op,
                                          raw_comm);
                            if (t.is_cuda()) t.copy_(host);
                          }});
  }
#endif
  return candidates;
}

void print_header(const Options& options, const dpt::bench::BenchJob& job) {
  std::printf("# allreduce_bench: backend %s, device %s, world size %d, %d thread(s) per rank, %d warm-up + %d timed\n",
              options.backend.c_str(), job.device.str().c_str(), job.world_size, job.threads.intra_op_threads,
              options.common.warmup, options.common.iters);
  std::printf("# busbw = algbw * 2(n-1)/n; times are medians over samples, max over ranks\n");
  std::printf("%10s %9s %12s %10s %10s %12s %12s %10s %8s %6s\n", "size", "dtype", "ours(us)", "algbw", "busbw",
              "nocheck(us)", "raw(us)", "raw busbw", "ours/raw", "wrong");
}

void print_row(const nlohmann::json& row, const std::vector<Candidate>& candidates) {
  auto cell = [&](const char* name, const char* key) -> double {
    return row.contains(name) ? row[name][key].get<double>() : 0.0;
  };
  auto time_us = [&](const char* name) -> double {
    return row.contains(name) ? row[name]["time_s"]["median"].get<double>() * 1e6 : 0.0;
  };
  long long wrong = 0;
  for (const auto& c : candidates) wrong += row[c.name]["wrong"].is_null() ? 0 : row[c.name]["wrong"].get<long long>();
  std::printf("%10s %9s %12.1f %10.3f %10.3f %12.1f %12.1f %10.3f %8.3f %6lld\n",
              human_bytes(row["bytes"].get<int64_t>()).c_str(), row["dtype"].get<std::string>().c_str(),
              time_us("ours"), cell("ours", "algbw_gbps"), cell("ours", "busbw_gbps"), time_us("ours_nocheck"),
              time_us("raw_mpi"), cell("raw_mpi", "busbw_gbps"),
              row.contains("ours_over_raw") ? row["ours_over_raw"].get<double>() : 0.0, wrong);
  std::fflush(stdout);
}

int run(int argc, char** argv) {
  Options options;
  if (auto code = parse_options(argc, argv, options)) return *code;
  dpt::bench::BenchJob job(options.common, options.backend);
  const Communicators comms = open_communicators(options, job);
  BenchControl control(job.world_size);
  nlohmann::json document = job.document("allreduce");
  document["backend"] = options.backend;
  document["ours_checks_collectives"] = job.comm->checks_calls();  // what the communicator does
  document["results"] = nlohmann::json::array();
  const bool table = job.rank == 0 && !options.common.quiet;
  if (table) print_header(options, job);
  for (const auto& dtype_name : options.dtypes) {
    auto candidates = candidates_for(options, comms, control, parse_dtype(dtype_name));
    const int64_t max_bytes = parse_bytes(options.max_bytes, "--max-bytes");
    for (int64_t bytes = parse_bytes(options.min_bytes, "--min-bytes"); bytes <= max_bytes;
         bytes *= options.step_factor) {
      auto row = measure_size(options, control, candidates, bytes, dtype_name, job.device, job.rank, job.world_size);
      if (table) print_row(row, candidates);
      document["results"].push_back(std::move(row));
    }
  }
  if (job.rank == 0) dpt::bench::write_json(options.common.json_path, document);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return dpt::run_main("allreduce_bench", [&] { return run(argc, argv); }); }
