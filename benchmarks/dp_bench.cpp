// dp_bench: training throughput of dpt::DataParallel for 1..N replicas of the MLP 784-1024-1024-10.
//
//   dp_bench --devices cpu,cpu --batch 256 --steps 20 --threads 1 --out dp.json
//   dp_bench --devices cuda:0,cuda:1,cuda:2,cuda:3 --batch 1024
//
// For k = 1..N it wraps the model over the first k devices and times full training steps
// (forward, backward, SGD step; CUDA synchronized) on one fixed batch; samples/s = batch / median
// step time. "unwrapped" is the same step without DataParallel, on the first device. Threads are
// set deliberately (--threads intra-op threads, inter-op 1) and recorded: CPU replicas share the
// cores, so on a machine with C cores k replicas x T threads should stay <= C.
#include <torch/torch.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench_options.h"
#include "dptrain/core/error.h"
#include "dptrain/core/model.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/data_parallel/data_parallel.h"
#include "json_output.h"
#include "machine_info.h"
#include "stats.h"
#include "timing.h"

namespace {

std::vector<torch::Device> parse_devices(const std::string& list) {
  std::vector<torch::Device> devices;
  std::stringstream stream(list);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      devices.emplace_back(item);
    } catch (const c10::Error&) {
      DPT_THROW(InvalidArgumentError, "--devices: '", item, "' is not a device (cpu, cuda:0, ...)");
    }
  }
  DPT_CHECK(!devices.empty(), InvalidArgumentError, "--devices is empty");
  for (const auto& device : devices) {
    if (!device.is_cuda()) continue;
    const int visible = static_cast<int>(torch::cuda::device_count());
    DPT_CHECK(device.has_index() && device.index() < visible, InvalidArgumentError, "--devices: ", device,
              " is not a visible CUDA device (", visible, " visible; name them cuda:0, cuda:1, ...)");
  }
  return devices;
}

dpt::Model make_mlp(torch::Device device) {
  torch::manual_seed(0);
  dpt::Model model(torch::nn::Sequential(torch::nn::Linear(784, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, 1024),
                                         torch::nn::ReLU(), torch::nn::Linear(1024, 10)));
  model.to(device);
  return model;
}

// Median-summarized seconds per training step of `forward` on the model's parameters.
template <typename Forward>
dpt::bench::Stats time_steps(dpt::Model& model, Forward forward, const torch::Tensor& x, const torch::Tensor& y,
                             int warmup, int steps) {
  torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.01));
  const bool cuda = x.is_cuda();
  std::vector<double> seconds;
  for (int i = 0; i < warmup + steps; ++i) {
    if (cuda) torch::cuda::synchronize();
    const auto start = dpt::bench::Clock::now();
    sgd.zero_grad();
    torch::cross_entropy_loss(forward(x), y).backward();
    sgd.step();
    if (cuda) torch::cuda::synchronize();
    if (i >= warmup) seconds.push_back(dpt::bench::seconds_since(start));
  }
  return dpt::bench::summarize(seconds);
}

}  // namespace

int main(int argc, char** argv) {
  dpt::bench::CommonOptions common;
  std::string device_list = "cpu,cpu";
  int64_t batch = 256;
  CLI::App app{"dp_bench: DataParallel training throughput (samples/s) for 1..N replicas"};
  dpt::bench::add_common_options(app, common, "--steps");
  app.add_option("--devices", device_list, "comma-separated replica devices (cpu may repeat)")->capture_default_str();
  app.add_option("--batch", batch, "samples per step (split over the replicas)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--out", common.json_path, "write the results as JSON to this file (same as --json)");
  if (auto code = dpt::bench::parse(app, argc, argv)) return *code;

  return dpt::run_main("dp_bench", [&] {
    const auto threads = dpt::bench::apply_threads(common.threads);
    const auto devices = parse_devices(device_list);
    std::printf("dp_bench: threads intra-op %d, inter-op %d, OMP_NUM_THREADS=%s; batch %lld, %d steps (+%d warm-up)\n",
                threads.intra_op_threads, threads.inter_op_threads, threads.omp_num_threads.c_str(),
                static_cast<long long>(batch), common.iters, common.warmup);

    const torch::Device first = devices.front();
    torch::manual_seed(1);
    auto x = torch::randn({batch, 784}).to(first);
    auto y = torch::randint(10, {batch}).to(first);

    nlohmann::json results = nlohmann::json::array();
    auto report = [&](const std::string& name, size_t replicas, const dpt::bench::Stats& stats) {
      const double samples_per_s = static_cast<double>(batch) / stats.median;
      std::printf("%-12s replicas %zu  step %8.3f ms (p10 %.3f, p90 %.3f)  %10.1f samples/s\n", name.c_str(), replicas,
                  stats.median * 1e3, stats.p10 * 1e3, stats.p90 * 1e3, samples_per_s);
      results.push_back({{"mode", name},
                         {"replicas", replicas},
                         {"step_seconds", dpt::bench::to_json(stats)},
                         {"samples_per_s", samples_per_s}});
    };

    {
      auto model = make_mlp(first);
      report("unwrapped", 1,
             time_steps(
                 model, [&](const torch::Tensor& input) { return model.forward(input); }, x, y, common.warmup,
                 common.iters));
    }
    for (size_t count = 1; count <= devices.size(); ++count) {
      auto model = make_mlp(first);
      dpt::DataParallel dp(model, std::vector<torch::Device>(devices.begin(), devices.begin() + count));
      report(
          "DataParallel", count,
          time_steps(
              model, [&](const torch::Tensor& input) { return dp.forward(input); }, x, y, common.warmup, common.iters));
    }

    nlohmann::json document{{"benchmark", "dp_bench"},
                            {"model", "mlp 784-1024-1024-10"},
                            {"devices", device_list},
                            {"batch", batch},
                            {"steps", common.iters},
                            {"warmup", common.warmup},
                            {"threads", dpt::bench::to_json(threads)},
                            {"machine", dpt::bench::machine_info()},
                            {"results", results}};
    dpt::bench::write_json(common.json_path, document);
    return 0;
  });
}
