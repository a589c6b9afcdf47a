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
//                    did not hide); optimizer_s measured here (with --overlap-optimizer the step
//                    runs inside backward: its time is in backward_s and exposed_comm_s instead).
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
#include <optional>
#include <string>
#include <vector>

#include "bench_job.h"
#include "bench_options.h"
#include "chrome_trace.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/model.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "dptrain/parallel/ddp/reducer.h"
#include "dptrain/parallel/comm_hooks/hierarchical_allreduce.h"
#include "dptrain/parallel/comm_hooks/powersgd.h"
#include "dptrain/parallel/runtime/runtime.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "dptrain/trainers/optim/optim.h"
#include "gpu_profile.h"
#include "json_output.h"
#include "stats.h"
#include "timing.h"

namespace {

using dpt::bench::Clock;

struct Options {
  dpt::bench::CommonOptions common;
  std::string model = "mlp";
  int batch = 64;
  std::string backend;  // empty: mpi on the CPU, the Runtime's choice (nccl) on CUDA
  double bucket_cap_mb = 25.0;
  bool bucket_cap_auto = false;
  bool ddp = true;
  bool gradient_as_bucket_view = dpt::DdpOptions().gradient_as_bucket_view();
  bool overlap_optimizer = false;  // DDP steps the optimizer bucket by bucket inside backward
  std::string optimizer = "sgd";   // sgd (lr 0.01, momentum 0.9) or adamw (lr 1e-3, weight decay 0.01)
  bool hierarchical = false;  // buckets through dpt::HierarchicalAllreduce (when the host layout helps)
  int64_t powersgd_rank = 0;  // > 0: buckets through dpt::PowerSgd of this rank, compressed from the first timed step
  std::string trace_path;
  int64_t seed = 0;
};

std::optional<int> parse_options(int argc, char** argv, Options& options) {
  options.common.iters = 30;
  CLI::App app{"ddp_bench: DistributedDataParallel training throughput on synthetic data"};
  dpt::bench::add_common_options(app, options.common, "--steps");
  app.add_option("--model", options.model, "model of the zoo")
      ->check(CLI::IsMember({"mlp", "cnn", "resnet18"}))
      ->capture_default_str();
  app.add_option("--batch", options.batch, "samples per rank per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--backend", options.backend, "mpi, nccl or store (default: mpi on the CPU, nccl on CUDA)");
  app.add_option("--bucket-cap-mb", options.bucket_cap_mb, "DDP gradient bucket size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--bucket-cap-auto", options.bucket_cap_auto,
               "DDP chooses the bucket cap after two steps (from --bucket-cap-mb; the warm-up must cover them)");
  app.add_flag("!--no-ddp", options.ddp, "plain training without DDP (each rank alone): DDP's overhead baseline");
  app.add_flag("--gradient-as-bucket-view,!--no-gradient-as-bucket-view", options.gradient_as_bucket_view,
               "DDP: .grad tensors view the buckets (DDP's default: on)");
  app.add_flag("--overlap-optimizer", options.overlap_optimizer,
               "DDP steps the optimizer inside backward, each bucket as soon as it is reduced");
  app.add_option("--optimizer", options.optimizer, "sgd (lr 0.01, momentum 0.9) or adamw (lr 1e-3, weight decay 0.01)")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->capture_default_str();
  app.add_flag("--hierarchical", options.hierarchical,
               "DDP: buckets all-reduced within each host, then across hosts (hosts from the hostnames)");
  app.add_option("--powersgd-rank", options.powersgd_rank,
                 "DDP's gradients compressed by PowerSGD of this rank from the first timed step (0: off)");
  app.add_option("--trace", options.trace_path, "write a Chrome trace (Perfetto) of the timed steps, all ranks");
  app.add_option("--seed", options.seed, "model and data seed")->capture_default_str();
  if (auto code = dpt::bench::parse(app, argc, argv)) return code;
  DPT_CHECK(options.trace_path.empty() || dpt::fs::parent_is_writable(options.trace_path), IoError, "--trace ",
            options.trace_path, ": its directory does not exist or is not writable");
  DPT_CHECK(options.powersgd_rank >= 0, InvalidArgumentError, "--powersgd-rank must be >= 0, got ",
            options.powersgd_rank);
  DPT_CHECK(!(options.hierarchical && options.powersgd_rank > 0), InvalidArgumentError,
            "--powersgd-rank and --hierarchical: pick one");
  return std::nullopt;
}

// Input shape of one sample for each model of the zoo, as the benchmark feeds it.
std::vector<int64_t> sample_shape(const std::string& model) {
  if (model == "resnet18") return {3, 32, 32};
  return {1, 28, 28};  // mlp and cnn: Fashion-MNIST images
}

// What is measured: the model of the zoo, under DDP (with its comm hook) or alone, SGD, and one
// fixed random batch per rank (the same model everywhere - DDP broadcasts rank 0's anyway).
struct Training {
  explicit Training(const Options& options, const dpt::bench::BenchJob& job);
  torch::Tensor forward() { return ddp ? ddp->forward(x) : model.forward(x); }

  dpt::Model model;
  int64_t parameter_count = 0;
  std::unique_ptr<dpt::DistributedDataParallel> ddp;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  torch::Tensor x, y;
};

dpt::OptimizerOptions optimizer_options(const Options& options) {
  if (options.optimizer == "adamw") return dpt::OptimizerOptions().name("adamw").lr(1e-3).weight_decay(0.01);
  return dpt::OptimizerOptions().name("sgd").lr(0.01).momentum(0.9);
}

// Seeded: the same weights on every rank.
dpt::Model zoo_model(const std::string& name, int64_t seed) {
  torch::manual_seed(seed);
  auto shape = sample_shape(name);
  dpt::ModelZooOptions zoo;
  zoo.in_channels = shape[0];
  zoo.height = shape[1];
  zoo.width = shape[2];
  return dpt::Model(dpt::make_builtin_model(name, zoo));
}

Training::Training(const Options& options, const dpt::bench::BenchJob& job)
    : model(zoo_model(options.model, options.seed)) {
  model.to(job.device);
  model.train();
  for (const auto& p : model.parameters()) parameter_count += p.numel();
  if (options.ddp) {
    ddp = std::make_unique<dpt::DistributedDataParallel>(
        model, job.comm,
        dpt::DdpOptions()
            .bucket_cap_mb(options.bucket_cap_mb)
            .bucket_cap_auto(options.bucket_cap_auto)
            .gradient_as_bucket_view(options.gradient_as_bucket_view));
    if (options.hierarchical) {
      auto hierarchical = std::make_shared<dpt::HierarchicalAllreduce>(job.comm);
      if (hierarchical->helps()) ddp->register_comm_hook(hierarchical->comm_hook());
    }
    if (options.powersgd_rank > 0) {
      auto powersgd = std::make_shared<dpt::PowerSgd>(
          dpt::PowerSgdOptions().rank(options.powersgd_rank).start_iteration(options.common.warmup));
      ddp->register_comm_hook(powersgd->comm_hook());
    }
  }
  // dptrain's SGD: multi-tensor kernels, as torch.optim.SGD's default on the PyTorch side.
  optimizer = dpt::make_optimizer(ddp ? ddp->parameters() : model.parameters(), optimizer_options(options));
  if (ddp && options.overlap_optimizer) ddp->overlap_optimizer(optimizer.get());
  torch::manual_seed(options.seed + 1 + job.rank);
  std::vector<int64_t> input_shape = {options.batch};
  const auto shape = sample_shape(options.model);
  input_shape.insert(input_shape.end(), shape.begin(), shape.end());
  x = torch::randn(input_shape).to(job.device);
  y = torch::randint(0, 10, {options.batch}, torch::kInt64).to(job.device);
}

// Per timed step, each rank's, then (max_over_ranks) the slowest rank's.
struct StepTimes {
  std::vector<double> step, forward, backward, exposed_comm, optimizer;
  double wall_s = 0;  // of all timed steps
  void max_over_ranks(dpt::Communicator& comm) {
    std::vector<double> wall = {wall_s};
    for (auto* values : {&wall, &step, &forward, &backward, &exposed_comm, &optimizer}) {
      dpt::bench::max_over_ranks(comm, *values);
    }
    wall_s = wall[0];
  }
};

// --trace: a Chrome trace of the timed steps on the CPU (DDP's own events and the optimizer), a
// Kineto trace on CUDA (collectives there are asynchronous: only the GPU timeline shows overlap).
struct StepTrace {
  StepTrace(const Options& options, const dpt::bench::BenchJob& job, Training& training) : path(options.trace_path) {
    if (path.empty() || job.device.is_cuda()) return;
    chrome = std::make_unique<dpt::bench::ChromeTrace>(job.rank);
    if (!training.ddp) return;
    training.ddp->set_trace_recorder([this](const dpt::TraceEvent& event) {
      if (!recording) return;
      const bool communication = event.name.rfind("allreduce", 0) == 0;
      chrome->add_us(event.name, event.category, event.start_us, event.duration_us,
                     communication ? dpt::bench::ChromeTrace::kCommunication : dpt::bench::ChromeTrace::kCompute);
    });
  }
  void start(const dpt::bench::BenchJob& job) {
    recording = true;
    if (!path.empty() && job.device.is_cuda()) gpu = std::make_unique<dpt::bench::GpuProfile>();
  }
  // Rank 0 writes the merged Chrome trace; on CUDA every rank its own file.
  void finish(const dpt::bench::BenchJob& job) {
    recording = false;
    if (gpu) gpu->save(dpt::bench::rank_file(path, job.rank));
    if (!chrome) return;
    const std::string events = chrome->serialize();
    auto gathered = job.comm->allgather_bytes(dpt::Bytes(events.begin(), events.end()));
    if (job.rank != 0) return;
    std::vector<std::string> per_rank;
    for (const auto& bytes : gathered) per_rank.emplace_back(bytes.begin(), bytes.end());
    dpt::bench::ChromeTrace::write_merged(path, per_rank);
  }

  std::string path;
  std::unique_ptr<dpt::bench::ChromeTrace> chrome;
  std::unique_ptr<dpt::bench::GpuProfile> gpu;
  std::atomic<bool> recording{false};  // the recorder may run on an autograd thread
};

StepTimes time_steps(const Options& options, const dpt::bench::BenchJob& job, Training& training, StepTrace& trace) {
  StepTimes times;
  const bool cuda = job.device.is_cuda();
  job.comm->barrier();
  Clock::time_point wall_start = Clock::now();
  for (int step = 0; step < options.common.warmup + options.common.iters; ++step) {
    if (step == options.common.warmup) {
      job.synchronize();
      job.comm->barrier();  // every rank's clock starts together
      wall_start = Clock::now();
      trace.start(job);
    }
    const auto t0 = Clock::now();
    training.optimizer->zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(training.forward(), training.y);
    job.synchronize();
    const auto t1 = Clock::now();
    loss.backward();
    job.synchronize();
    const auto t2 = Clock::now();
    if (!training.ddp || !training.ddp->optimizer_stepped()) training.optimizer->step();
    job.synchronize();
    const auto t3 = Clock::now();
    if (step < options.common.warmup) continue;
    times.step.push_back(dpt::bench::seconds_between(t0, t3));
    times.optimizer.push_back(dpt::bench::seconds_between(t2, t3));
    if (training.ddp && !cuda) {  // DDP's own split, and how long backward waited for buckets
      auto stats = training.ddp->last_iteration_stats();
      times.forward.push_back(stats.forward_s);
      times.backward.push_back(stats.backward_s);
      times.exposed_comm.push_back(stats.exposed_comm_s);
    } else {
      times.forward.push_back(dpt::bench::seconds_between(t0, t1));
      times.backward.push_back(dpt::bench::seconds_between(t1, t2));
    }
    if (trace.chrome) {
      if (!training.ddp) {
        trace.chrome->add("forward", "compute", t0, t1);
        trace.chrome->add("backward", "compute", t1, t2);
      }
      trace.chrome->add("optimizer step", "compute", t2, t3);
    }
  }
  times.wall_s = dpt::bench::seconds_since(wall_start);
  return times;
}

nlohmann::json summary(const std::vector<double>& values) {
  return values.empty() ? nlohmann::json(nullptr) : dpt::bench::to_json(dpt::bench::summarize(values));
}

void report(const Options& options, const dpt::bench::BenchJob& job, const Training& training,
            const StepTimes& times) {
  const double samples_per_s = static_cast<double>(job.world_size) * options.batch * options.common.iters / times.wall_s;
  nlohmann::json results = {{"samples_per_s", samples_per_s},
                            {"wall_s", times.wall_s},
                            {"step_time_s", summary(times.step)},
                            {"forward_s", summary(times.forward)},
                            {"backward_s", summary(times.backward)},
                            {"optimizer_s", summary(times.optimizer)},
                            {"exposed_comm_s", training.ddp ? summary(times.exposed_comm) : nlohmann::json(nullptr)}};
  nlohmann::json document = job.document("ddp");
  document.update({{"model", options.model},
                   {"parameters", training.parameter_count},
                   {"backend", training.ddp ? job.comm->backend_name() : "none"},
                   {"ddp", bool(training.ddp)},
                   {"batch_per_rank", options.batch},
                   {"steps", options.common.iters},
                   {"optimizer", options.optimizer == "sgd" ? "sgd lr 0.01 momentum 0.9" : "adamw lr 1e-3 weight decay 0.01"},
                   {"overlap_optimizer", options.overlap_optimizer},
                   {"bucket_cap_mb", options.bucket_cap_mb},
                   {"bucket_cap_auto", options.bucket_cap_auto},
                   {"gradient_as_bucket_view", options.gradient_as_bucket_view},
                   {"hierarchical", options.hierarchical},
                   {"powersgd_rank", options.powersgd_rank},
                   {"results", results}});
  if (training.ddp) {
    auto stats = training.ddp->last_iteration_stats();
    document["buckets"] = stats.num_buckets;
    document["gradient_bytes"] = stats.bytes_reduced;
    const auto& reducer = training.ddp->reducer();
    document["bucket_cap_mb_used"] = static_cast<double>(reducer.bucket_cap_bytes()) / (1 << 20);
    if (const auto& choice = reducer.bucket_cap_choice()) {  // rank 0 chose it
      nlohmann::json trials = nlohmann::json::array();
      for (const auto& trial : choice->trials) {
        trials.push_back({{"cap_mb", static_cast<double>(trial.cap_bytes) / (1 << 20)},
                          {"buckets", trial.buckets},
                          {"simulated_end_s", trial.end_s}});
      }
      document["bucket_cap_choice"] = {{"backward_s", choice->backward_s}, {"trials", trials}};
    }
  }
  if (!options.common.quiet) {
    auto ms = [&](const char* key) { return results[key].is_null() ? 0.0 : results[key]["median"].get<double>() * 1e3; };
    const std::string over = training.ddp ? "DDP over " + job.comm->backend_name() : "no DDP";
    std::printf("# ddp_bench: %s (%lld parameters) on %s, %s, world size %d, batch %d/rank, %d thread(s)/rank\n",
                options.model.c_str(), static_cast<long long>(training.parameter_count), job.device.str().c_str(),
                over.c_str(), job.world_size, options.batch, job.threads.intra_op_threads);
    std::printf("samples/s %.1f  step %.2f ms  forward %.2f ms  backward %.2f ms  exposed comm %.2f ms  optimizer %.2f ms\n",
                samples_per_s, ms("step_time_s"), ms("forward_s"), ms("backward_s"), ms("exposed_comm_s"),
                ms("optimizer_s"));
  }
  dpt::bench::write_json(options.common.json_path, document);
}

int run(int argc, char** argv) {
  Options options;
  if (auto code = parse_options(argc, argv, options)) return *code;
  const std::string backend = options.backend.empty() && options.common.device == "cpu" ? "mpi" : options.backend;
  dpt::bench::BenchJob job(options.common, backend);
  Training training(options, job);
  StepTrace trace(options, job, training);
  StepTimes times = time_steps(options, job, training, trace);
  trace.finish(job);
  times.max_over_ranks(*job.comm);
  if (job.rank == 0) report(options, job, training, times);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return dpt::run_main("ddp_bench", [&] { return run(argc, argv); }); }
