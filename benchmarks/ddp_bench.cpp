// ddp_bench: training throughput of DistributedDataParallel on the model zoo, with synthetic data.
//
//   scripts/dpt-mpirun -np 2 build/bin/ddp_bench --model mlp --batch 64 --steps 50 --json out.json
//   scripts/dpt-mpirun -np 2 build/bin/ddp_bench --model mlp --trace trace.json   (open in Perfetto)
//   build/bin/ddp_bench --model resnet18 --device cuda --no-ddp                    (plain training)
//
// Each rank trains the same model (dpt::make_builtin_model) on one fixed random batch per step:
// zero_grad, forward, cross-entropy, backward (DDP reduces the gradient buckets meanwhile), SGD
// step (lr 0.01, momentum 0.9) - the loop of benchmarks/compare_pytorch.py, which runs PyTorch's
// DDP on the same architectures for the side-by-side ratio.
//
// Reported (times per step: each rank's, then the max over ranks, then median/p10/p90 over steps):
//   samples_per_s  = world_size * batch_per_rank * steps / wall time of the timed steps
//   step_time_s    = zero_grad + forward + loss + backward + optimizer step
//   forward_s, backward_s, exposed_comm_s: DDP's own IterationStats (exposed_comm_s = how long
//                    the end of backward waited for bucket all-reduces: the communication backward
//                    did not hide); optimizer_s measured here.
// --trace FILE: a Chrome trace of every timed step on every rank (forward, backward, each bucket's
//   all-reduce from launch to completion, the wait for buckets, the optimizer), gathered on rank 0.
//   On CUDA it is a Kineto trace instead (GPU kernels, copies and NCCL kernels on every stream;
//   each rank writes FILE, rank r > 0 FILE with ".rank<r>" before the extension): collectives
//   there are asynchronous, so only the GPU timeline shows what overlaps. On CUDA the forward and
//   backward times are synchronised wall times (exposed_comm_s is null: the backward time holds
//   whatever communication it did not hide).
#include <torch/torch.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_options.h"
#include "chrome_trace.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/model.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/distributed_data_parallel.h"
#include "dptrain/parallel/hierarchical_allreduce.h"
#include "dptrain/parallel/powersgd.h"
#include "dptrain/parallel/runtime.h"
#include "dptrain/trainers/model_zoo.h"
#include "dptrain/trainers/optim.h"
#include "gpu_profile.h"
#include "json_output.h"
#include "machine_info.h"
#include "stats.h"
#include "timing.h"

namespace {

using dpt::bench::Clock;

struct Options {
  dpt::bench::CommonOptions common;
  std::string model = "mlp";
  int batch = 64;
  std::string backend;  // empty: the Runtime's choice (mpi on CPU, nccl on CUDA)
  double bucket_cap_mb = 25.0;
  bool ddp = true;
  bool gradient_as_bucket_view = false;
  bool hierarchical = false;  // buckets through dpt::HierarchicalAllreduce (when the host layout helps)
  int64_t powersgd_rank = 0;  // > 0: buckets through dpt::PowerSgd of this rank, compressed from the first timed step
  std::string trace_path;
  int64_t seed = 0;
};

// Input shape of one sample for each model of the zoo, as the benchmark feeds it.
std::vector<int64_t> sample_shape(const std::string& model) {
  if (model == "resnet18") return {3, 32, 32};
  return {1, 28, 28};  // mlp and cnn: Fashion-MNIST images
}

// FILE for rank 0, FILE with ".rank<r>" before its extension for rank r.
std::string rank_file(const std::string& path, int rank) {
  if (rank == 0) return path;
  const auto dot = path.rfind('.');
  const auto slash = path.rfind('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  const std::string tag = ".rank" + std::to_string(rank);
  return has_extension ? path.substr(0, dot) + tag + path.substr(dot) : path + tag;
}

struct StepTimes {
  std::vector<double> step, forward, backward, exposed_comm, optimizer;
};

// Per-step maxima over ranks (a synchronous step is as slow as its slowest rank).
void max_over_ranks(dpt::Communicator& comm, std::vector<double>& values) {
  if (comm.size() == 1 || values.empty()) return;
  auto tensor = torch::tensor(values, torch::kFloat64).to(comm.device());
  comm.allreduce(tensor, dpt::ReduceOp::Max);
  auto cpu = tensor.cpu();
  values.assign(cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel());
}

int run(int argc, char** argv) {
  Options options;
  options.common.iters = 30;
  CLI::App app{"ddp_bench: DistributedDataParallel training throughput on synthetic data"};
  dpt::bench::add_common_options(app, options.common, "--steps");
  app.add_option("--model", options.model, "model of the zoo")
      ->check(CLI::IsMember({"mlp", "cnn", "resnet18"}))
      ->capture_default_str();
  app.add_option("--batch", options.batch, "samples per rank per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--backend", options.backend, "mpi, nccl or gloo (default: the runtime's choice for the device)");
  app.add_option("--bucket-cap-mb", options.bucket_cap_mb, "DDP gradient bucket size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("!--no-ddp", options.ddp, "plain training without DDP (each rank alone): DDP's overhead baseline");
  app.add_flag("--gradient-as-bucket-view", options.gradient_as_bucket_view, "DDP: .grad tensors view the buckets");
  app.add_flag("--hierarchical", options.hierarchical,
               "DDP: buckets all-reduced within each host, then across hosts (hosts from the hostnames)");
  app.add_option("--powersgd-rank", options.powersgd_rank,
                 "DDP's gradients compressed by PowerSGD of this rank from the first timed step (0: off)");
  app.add_option("--trace", options.trace_path, "write a Chrome trace (Perfetto) of the timed steps, all ranks");
  app.add_option("--seed", options.seed, "model and data seed")->capture_default_str();
  if (auto code = dpt::bench::parse(app, argc, argv)) return *code;
  DPT_CHECK(options.trace_path.empty() || dpt::fs::parent_is_writable(options.trace_path), IoError, "--trace ",
            options.trace_path, ": its directory does not exist or is not writable");

  auto threads = dpt::bench::apply_threads(options.common.threads);
  dpt::bench::check_device(options.common.device);
  dpt::RuntimeOptions runtime_options;
  runtime_options.backend = options.backend;
  if (options.backend.empty() && options.common.device == "cpu") runtime_options.backend = "mpi";
  dpt::Runtime runtime(runtime_options);
  auto comm = runtime.world();
  const int rank = comm->rank();
  const int world_size = comm->size();
  const torch::Device device = options.common.device == "cuda" ? runtime.device() : torch::Device(torch::kCPU);
  DPT_CHECK(device.type() == (options.common.device == "cuda" ? torch::kCUDA : torch::kCPU), UnsupportedError,
            "--device ", options.common.device, ": the runtime's device is ", device.str());

  // Model and data: the same model on every rank (DDP broadcasts rank 0's anyway), different data.
  torch::manual_seed(options.seed);
  auto shape = sample_shape(options.model);
  dpt::ModelZooOptions zoo;
  zoo.in_channels = shape[0];
  zoo.height = shape[1];
  zoo.width = shape[2];
  dpt::Model model(dpt::make_builtin_model(options.model, zoo));
  model.to(device);
  model.train();
  int64_t parameter_count = 0;
  for (const auto& p : model.parameters()) parameter_count += p.numel();

  std::unique_ptr<dpt::DistributedDataParallel> ddp;
  if (options.ddp) {
    ddp = std::make_unique<dpt::DistributedDataParallel>(
        model, comm,
        dpt::DdpOptions().bucket_cap_mb(options.bucket_cap_mb).gradient_as_bucket_view(options.gradient_as_bucket_view));
    DPT_CHECK(options.powersgd_rank >= 0, InvalidArgumentError, "--powersgd-rank must be >= 0, got ",
              options.powersgd_rank);
    DPT_CHECK(!(options.hierarchical && options.powersgd_rank > 0), InvalidArgumentError,
              "--powersgd-rank and --hierarchical: pick one");
    if (options.hierarchical) {
      auto hierarchical = std::make_shared<dpt::HierarchicalAllreduce>(comm);
      if (hierarchical->helps()) ddp->register_comm_hook(hierarchical->comm_hook());
    }
    if (options.powersgd_rank > 0) {
      auto powersgd = std::make_shared<dpt::PowerSgd>(
          dpt::PowerSgdOptions().rank(options.powersgd_rank).start_iteration(options.common.warmup));
      ddp->register_comm_hook(powersgd->comm_hook());
    }
  }
  std::vector<torch::Tensor> parameters = ddp ? ddp->parameters() : model.parameters();
  // dptrain's SGD: multi-tensor kernels, as torch.optim.SGD's default on the PyTorch side.
  auto optimizer_holder = dpt::make_optimizer(parameters, dpt::OptimizerOptions().name("sgd").lr(0.01).momentum(0.9));
  auto& optimizer = *optimizer_holder;
  auto generator_seed = options.seed + 1 + rank;
  torch::manual_seed(generator_seed);
  std::vector<int64_t> input_shape = {options.batch};
  input_shape.insert(input_shape.end(), shape.begin(), shape.end());
  torch::Tensor x = torch::randn(input_shape).to(device);
  torch::Tensor y = torch::randint(0, 10, {options.batch}, torch::kInt64).to(device);

  auto synchronize = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  };

  // Trace: every rank's origin right after a barrier. Events of the warm-up steps are dropped.
  std::unique_ptr<dpt::bench::ChromeTrace> trace;
  std::atomic<bool> recording{false};  // the recorder may run on an autograd thread
  comm->barrier();
  std::unique_ptr<dpt::bench::GpuProfile> gpu_profile;
  if (!options.trace_path.empty() && !device.is_cuda()) {
    trace = std::make_unique<dpt::bench::ChromeTrace>(rank);
    if (ddp) {
      ddp->set_trace_recorder([&trace, &recording](const dpt::TraceEvent& event) {
        if (!recording) return;
        const bool communication = event.name.rfind("allreduce", 0) == 0;
        trace->add_us(event.name, event.category, event.start_us, event.duration_us,
                      communication ? dpt::bench::ChromeTrace::kCommunication : dpt::bench::ChromeTrace::kCompute);
      });
    }
  }

  StepTimes times;
  const int total = options.common.warmup + options.common.iters;
  Clock::time_point wall_start = Clock::now();
  for (int step = 0; step < total; ++step) {
    const bool timed = step >= options.common.warmup;
    if (step == options.common.warmup) {
      synchronize();
      comm->barrier();
      wall_start = Clock::now();
      recording = true;
      if (!options.trace_path.empty() && device.is_cuda()) gpu_profile = std::make_unique<dpt::bench::GpuProfile>();
    }
    const auto t0 = Clock::now();
    optimizer.zero_grad();
    torch::Tensor logits = ddp ? ddp->forward(x) : model.forward(x);
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
    synchronize();
    const auto t1 = Clock::now();
    loss.backward();
    synchronize();
    const auto t2 = Clock::now();
    optimizer.step();
    synchronize();
    const auto t3 = Clock::now();
    if (!timed) continue;
    times.step.push_back(dpt::bench::seconds_between(t0, t3));
    times.optimizer.push_back(dpt::bench::seconds_between(t2, t3));
    if (ddp && !device.is_cuda()) {
      auto stats = ddp->last_iteration_stats();
      times.forward.push_back(stats.forward_s);
      times.backward.push_back(stats.backward_s);
      times.exposed_comm.push_back(stats.exposed_comm_s);
    } else {
      times.forward.push_back(dpt::bench::seconds_between(t0, t1));
      times.backward.push_back(dpt::bench::seconds_between(t1, t2));
    }
    if (trace) {
      if (!ddp) {
        trace->add("forward", "compute", t0, t1);
        trace->add("backward", "compute", t1, t2);
      }
      trace->add("optimizer step", "compute", t2, t3);
    }
  }
  std::vector<double> wall = {dpt::bench::seconds_since(wall_start)};
  recording = false;
  if (gpu_profile) gpu_profile->save(rank_file(options.trace_path, rank));

  max_over_ranks(*comm, wall);
  max_over_ranks(*comm, times.step);
  max_over_ranks(*comm, times.forward);
  max_over_ranks(*comm, times.backward);
  max_over_ranks(*comm, times.exposed_comm);
  max_over_ranks(*comm, times.optimizer);

  if (trace) {
    const std::string events = trace->serialize();
    auto gathered = comm->allgather_bytes(dpt::Bytes(events.begin(), events.end()));
    if (rank == 0) {
      std::vector<std::string> per_rank;
      for (const auto& bytes : gathered) per_rank.emplace_back(bytes.begin(), bytes.end());
      dpt::bench::ChromeTrace::write_merged(options.trace_path, per_rank);
    }
  }

  if (rank != 0) return 0;
  const double samples_per_s = static_cast<double>(world_size) * options.batch * options.common.iters / wall[0];
  nlohmann::json results = {
      {"samples_per_s", samples_per_s},
      {"wall_s", wall[0]},
      {"step_time_s", dpt::bench::to_json(dpt::bench::summarize(times.step))},
      {"forward_s", dpt::bench::to_json(dpt::bench::summarize(times.forward))},
      {"backward_s", dpt::bench::to_json(dpt::bench::summarize(times.backward))},
      {"optimizer_s", dpt::bench::to_json(dpt::bench::summarize(times.optimizer))},
      {"exposed_comm_s", ddp && !times.exposed_comm.empty() ? dpt::bench::to_json(dpt::bench::summarize(times.exposed_comm))
                                                         : nlohmann::json(nullptr)}};
  nlohmann::json document = {{"benchmark", "ddp"},
                             {"framework", "dptrain"},
                             {"model", options.model},
                             {"parameters", parameter_count},
                             {"device", device.str()},
                             {"backend", ddp ? comm->backend_name() : "none"},
                             {"ddp", bool(ddp)},
                             {"world_size", world_size},
                             {"batch_per_rank", options.batch},
                             {"steps", options.common.iters},
                             {"warmup", options.common.warmup},
                             {"optimizer", "sgd lr 0.01 momentum 0.9"},
                             {"bucket_cap_mb", options.bucket_cap_mb},
                             {"hierarchical", options.hierarchical},
                             {"powersgd_rank", options.powersgd_rank},
                             {"threads", dpt::bench::to_json(threads)},
                             {"machine", dpt::bench::machine_info()},
                             {"results", results}};
  if (ddp) {
    auto stats = ddp->last_iteration_stats();
    document["buckets"] = stats.num_buckets;
    document["gradient_bytes"] = stats.bytes_reduced;
  }
  if (!options.common.quiet) {
    auto ms = [&](const char* key) { return results[key].is_null() ? 0.0 : results[key]["median"].get<double>() * 1e3; };
    std::printf("# ddp_bench: %s (%lld parameters) on %s, %s, world size %d, batch %d/rank, %d thread(s)/rank\n",
                options.model.c_str(), static_cast<long long>(parameter_count), device.str().c_str(),
                ddp ? ("DDP over " + comm->backend_name()).c_str() : "no DDP", world_size, options.batch,
                threads.intra_op_threads);
    std::printf("samples/s %.1f  step %.2f ms  forward %.2f ms  backward %.2f ms  exposed comm %.2f ms  optimizer %.2f ms\n",
                samples_per_s, ms("step_time_s"), ms("forward_s"), ms("backward_s"), ms("exposed_comm_s"),
                ms("optimizer_s"));
  }
  dpt::bench::write_json(options.common.json_path, document);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return dpt::run_main("ddp_bench", [&] { return run(argc, argv); }); }
