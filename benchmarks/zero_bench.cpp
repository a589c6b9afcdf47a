// ZeRO-1 and ZeRO-2 (dpt::ShardedOptimizer) against plain DDP + Adam on a wide MLP: optimizer-state
// and gradient bytes and peak RSS per rank, samples/s. One run = one mode at one world size; benchmarks/zero_bench.py
// alternates the modes over world sizes and plots.
//
//   scripts/dpt-mpirun -np 4 build/bin/zero_bench --mode zero2 --json -
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <chrono>
#include <iostream>

#include "dptrain/core/run_main.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "dptrain/parallel/runtime/runtime.h"
#include "dptrain/parallel/zero/sharded_optimizer.h"
#include "json_output.h"
#include "machine_info.h"

namespace {

int64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux: KiB
}

}  // namespace

int main(int argc, char** argv) {
  return dpt::run_main("zero_bench", [&] {
    CLI::App app{"ZeRO-1/2 vs plain DDP + Adam: optimizer state, gradients, peak RSS, samples/s per rank"};
    std::string mode = "zero1", json;
    int64_t width = 4096, layers = 3, batch = 32, steps = 8, warmup = 2;
    app.add_option("--mode", mode, "plain (DDP + Adam), zero1 or zero2 (DDP + ShardedOptimizer at that stage)")
        ->check(CLI::IsMember({"plain", "zero1", "zero2"}));
    app.add_option("--width", width, "hidden width")->capture_default_str();
    app.add_option("--layers", layers, "hidden layers")->capture_default_str();
    app.add_option("--batch", batch, "samples per rank per step")->capture_default_str();
    app.add_option("--steps", steps, "timed steps")->capture_default_str();
    app.add_option("--json", json, "write the result here ('-': stdout)");
    CLI11_PARSE(app, argc, argv);

    dpt::Runtime runtime;
    auto world = runtime.world();
    torch::manual_seed(0);
    torch::nn::Sequential net;
    int64_t in = 784;
    for (int64_t i = 0; i < layers; ++i) {
      net->push_back(torch::nn::Linear(in, width));
      net->push_back(torch::nn::ReLU());
      in = width;
    }
    net->push_back(torch::nn::Linear(in, 10));
    const int64_t rss_model = peak_rss_bytes();
    dpt::DistributedDataParallel ddp(net, world);
    int64_t parameters = 0;
    for (const auto& p : ddp.parameters()) parameters += p.numel();

    auto make = [](std::vector<torch::Tensor> params) {
      return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-4));
    };
    std::unique_ptr<dpt::ShardedOptimizer> sharded;
    std::unique_ptr<torch::optim::Optimizer> plain;
    if (mode == "plain") {
      plain = make(ddp.parameters());
    } else {
      sharded = std::make_unique<dpt::ShardedOptimizer>(ddp, make, dpt::ShardingOptions().stage(mode == "zero1" ? 1 : 2));
    }

    auto x = torch::randn({batch, 784});
    auto y = torch::randint(0, 10, {batch});
    auto one_step = [&] {
      if (sharded) {
        torch::cross_entropy_loss(ddp.forward(x), y).backward();  // reduce-scattered during backward
        sharded->step();
        sharded->zero_grad();
      } else {
        torch::cross_entropy_loss(ddp.forward(x), y).backward();
        plain->step();
        plain->zero_grad();
      }
    };
    for (int64_t i = 0; i < warmup; ++i) one_step();
    world->barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) one_step();
    world->barrier();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    const int64_t state = sharded ? sharded->state_bytes() : dpt::optimizer_state_bytes(*plain);
    // Plain DDP: the .grad tensors and DDP's buckets (a second copy of the gradient).
    const int64_t gradients = sharded ? sharded->gradient_bytes() : 2 * parameters * static_cast<int64_t>(sizeof(float));
    // Per rank: the largest over ranks (what a node must fit).
    auto per_rank = torch::tensor({static_cast<double>(state), static_cast<double>(peak_rss_bytes()),
                                   static_cast<double>(gradients)}, torch::kFloat64);
    world->allreduce(per_rank, dpt::ReduceOp::Max);
    if (world->rank() == 0) {
      nlohmann::json result = {
          {"benchmark", "zero"}, {"mode", mode}, {"world_size", world->size()}, {"parameters", parameters},
          {"batch_per_rank", batch}, {"steps", steps},
          {"samples_per_s", static_cast<double>(steps * batch * world->size()) / seconds},
          {"optimizer_state_bytes_max_rank", per_rank[0].item<double>()},
          {"peak_rss_bytes_max_rank", per_rank[1].item<double>()},
          {"gradient_bytes_max_rank", per_rank[2].item<double>()},
          {"rss_after_model_bytes_rank0", rss_model}, {"machine", dpt::bench::machine_info()}};
      if (json.empty()) {
        std::cout << result.dump(1) << std::endl;
      } else {
        dpt::bench::write_json(json, result);
      }
    }
    return 0;
  });
}
