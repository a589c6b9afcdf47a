// Options every benchmark shares, and the one place they are parsed and applied.
//
//   dpt::bench::CommonOptions common;
//   CLI::App app{"allreduce_bench: ..."};
//   dpt::bench::add_common_options(app, common);
//   app.add_option("--max-bytes", ...);
//   if (auto code = dpt::bench::parse(app, argc, argv)) return *code;   // --help, bad flags
//   dpt::bench::apply_threads(common);                                   // before any torch work
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace dpt::bench {

struct CommonOptions {
  int warmup = 3;           // untimed iterations first (allocator, caches, lazy MPI connections)
  int iters = 20;           // timed iterations
  int threads = 1;          // intra-op (BLAS/OpenMP) threads per rank
  std::string device = "cpu";
  std::string json_path;    // "" = no file; "-" = stdout
  bool quiet = false;       // no human-readable table
};

// `iters_flag` names the timed-iteration option ("--iters"; ddp_bench says "--steps", like
// compare_pytorch.py).
void add_common_options(CLI::App& app, CommonOptions& options, const std::string& iters_flag = "--iters");

// Parses; returns an exit code when the program should stop now (--help: 0, bad input: 2 after
// one error line), nullopt to go on.
std::optional<int> parse(CLI::App& app, int argc, char** argv);

// What apply_threads set, as printed in every result file.
struct ThreadSetup {
  int intra_op_threads = 0;
  int inter_op_threads = 0;
  std::string omp_num_threads;  // the environment variable as the process sees it afterwards
};

// Sets OMP_NUM_THREADS and MKL_NUM_THREADS to `threads` (so any library initialised later agrees)
// and at::set_num_threads(threads); inter-op threads to 1. Call before any tensor work.
ThreadSetup apply_threads(int threads);
nlohmann::json to_json(const ThreadSetup& setup);

// Validates --device: "cpu", or "cuda" when this build and this machine have CUDA.
// The CUDA device index is the local rank (one GPU per process).
void check_device(const std::string& device);

}  // namespace dpt::bench
