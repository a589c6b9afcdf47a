#include "bench_options.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <iostream>

#include "dptrain/core/config.h"
#include "dptrain/core/error.h"

namespace dpt::bench {

void add_common_options(CLI::App& app, CommonOptions& options, const std::string& iters_flag) {
  app.add_option("--warmup", options.warmup, "untimed iterations before measuring")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option(iters_flag, options.iters, "timed iterations")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", options.threads, "intra-op (BLAS/OpenMP) threads per rank")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--device", options.device, "cpu or cuda (one GPU per rank, chosen by local rank)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--json", options.json_path, "write the results as JSON to this file ('-' = stdout)");
  app.add_flag("--quiet", options.quiet, "no human-readable table on stdout");
}

std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << app.get_name() << ": error: " << e.what() << " (see --help)\n";
    return 2;
  }
  return std::nullopt;
}

ThreadSetup apply_threads(int threads) {
  DPT_CHECK(threads > 0, InvalidArgumentError, "--threads must be > 0, got ", threads);
  const std::string value = std::to_string(threads);
  setenv("OMP_NUM_THREADS", value.c_str(), 1);
  setenv("MKL_NUM_THREADS", value.c_str(), 1);
  at::set_num_threads(threads);
  // The inter-op pool can be sized only before its first use; a second call would throw.
  static bool inter_op_set = false;
  if (!inter_op_set) {
    at::set_num_interop_threads(1);
    inter_op_set = true;
  }
  ThreadSetup setup;
  setup.intra_op_threads = at::get_num_threads();
  setup.inter_op_threads = at::get_num_interop_threads();
  setup.omp_num_threads = std::getenv("OMP_NUM_THREADS");
  return setup;
}

nlohmann::json to_json(const ThreadSetup& setup) {
  return {{"intra_op_threads", setup.intra_op_threads},
          {"inter_op_threads", setup.inter_op_threads},
          {"OMP_NUM_THREADS", setup.omp_num_threads}};
}

void check_device(const std::string& device) {
  if (device == "cpu") return;
  DPT_CHECK(device == "cuda", InvalidArgumentError, "--device must be cpu or cuda, got '", device, "'");
  DPT_CHECK(DPTRAIN_HAVE_CUDA, UnsupportedError, "--device cuda: this build of dptrain has no CUDA");
  DPT_CHECK(torch::cuda::is_available(), UnsupportedError,
            "--device cuda: no CUDA device is visible on this machine");
}

}  // namespace dpt::bench
