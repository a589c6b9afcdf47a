#include "train_command.h"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>

#include "data_sources.h"
#include "dptrain/core/data/transforms.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"
#include "dptrain/core/serialize.h"
#include "dptrain/core/stop_request.h"
#include "mfu.h"
#include "model_files.h"
#include "preprocessing.h"

namespace dpt::cli {
namespace {

// Where `dptrain train` differs from a TrainerOptions() a program builds: a script's defaults
// (Adam at 1e-3 with a cosine schedule, SGD's momentum 0.9 when --optimizer sgd, a metrics file),
// in this one place; --help prints them from here.
TrainerOptions cli_defaults() {
  TrainerOptions options;
  options.optimizer().name("adam").lr(1e-3).momentum(0.9);
  options.schedule().kind("cosine");
  options.metrics_file("dptrain-metrics.jsonl");
  return options;
}

// --augment: random crop (4 px of zero padding, the image's own size) and horizontal flip.
Transform augmentation() {
  auto crop = [](Example example, SampleRng& rng) {
    const int64_t size = example.input.tensor("--augment: the inputs").size(-1);
    return RandomCrop(size, 4)(std::move(example), rng);
  };
  return compose({crop, RandomHorizontalFlip(0.5)});
}

// What the parsed options imply: momentum is SGD's only, evaluation batches are at least 512,
// --resume alone means the newest checkpoint, the default metrics file may fail with a warning.
void finish_options(TrainCommand& train) {
  TrainerOptions& options = train.options;
  if (options.optimizer().name() != "sgd") options.optimizer().momentum(0.0);
  options.eval_batch_size(std::max<int64_t>(options.batch_size(), 512));
  if (train.augment) options.train_transform(augmentation());
  if (train.app->count("--resume") > 0 && options.resume().empty()) options.resume("latest");
  if (!train.adam_betas.empty()) {
    options.optimizer().beta1(train.adam_betas[0]);
    options.optimizer().beta2(train.adam_betas[1]);
  }
  // --amp is --precision fp16, and the other way round.
  if (options.precision() == "fp16") options.mixed_precision(true);
  if (options.mixed_precision() && options.precision() == "fp32") options.precision("fp16");
  options.metrics_optional(train.app->count("--metrics") == 0);
}

// --out: a compiled package's state_dict, else the TorchScript module (with an image folder's
// class names, which `infer` prints). Written atomically: the old file stays if this fails.
void save_model(Model& model, const std::string& out, const DataOptions& data) {
  if (model.is_exported()) {
    save_state_dict(model, out);
    DPT_LOG_INFO("state_dict saved to {} (PyTorch: model.load_state_dict(torch.load(\"{}\")))", out, out);
  } else {
    model.eval();
    auto saved = model.torchscript();
    // Image folders: the class of label i travels with the model (`infer` prints them).
    if (auto classes = class_names(data); !classes.empty()) {
      c10::List<std::string> names;
      for (const auto& name : classes) names.push_back(name);
      if (saved.hasattr("class_names"))
        saved.setattr("class_names", names);
      else
        saved.register_attribute("class_names", c10::ListType::ofStrings(), names);
    }
    save_preprocessing(saved, data);                  // --image-size, --mean, --std: eval and infer apply them
    write_file_atomic(out, serialize_module(saved));  // the old file stays if this fails
    DPT_LOG_INFO("model saved to {} (TorchScript: torch.jit.load)", out);
  }
}

// Everything train can check before MPI starts.
void check_train(const CommonArgs& common, TrainCommand& train) {
  TrainerOptions& options = train.options;
  check_common(common, options);
  // The rank's own GPU is known once the Runtime is up; cuda:0 stands for it in the early checks
  // (--amp needs a CUDA device).
  const bool cuda = common.device != "cpu" && torch::cuda::is_available();
  options.device(cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU));
  validate(options, launch_rank() == 0);
  DPT_CHECK(train.transform.empty() || launch_rank() != 0 || fs::is_regular_file(train.transform), InvalidArgumentError,
            "--transform ", train.transform, ": no such file");
  check_output("--out", train.out);
  check_output("--metrics", options.metrics_file(), /*stream=*/true);
  DPT_CHECK(train.plot.empty(), InvalidArgumentError,
            "--plot was removed: watch the curves with --tensorboard DIR, "
            "or draw them from the metrics file with `python python/dptrain_plot.py ",
            options.metrics_file().empty() ? "METRICS" : options.metrics_file(), " -o ", train.plot,
            "` (bin/dptrain-plot when installed)");
  if (!options.checkpoint_dir().empty()) {
    DPT_CHECK(!fs::exists(options.checkpoint_dir()) || fs::is_directory(options.checkpoint_dir()), InvalidArgumentError,
              "--checkpoint-dir ", options.checkpoint_dir(), " exists and is not a directory");
    DPT_CHECK(fs::exists(options.checkpoint_dir()) || fs::can_be_created(options.checkpoint_dir()),
              InvalidArgumentError, "--checkpoint-dir ", options.checkpoint_dir(), " cannot be created");
  }
}

// How the ranks exchange gradients.
void add_communication_options(CLI::App& command, TrainerOptions& o) {
  CLI::App* cmd = &command;
  cmd->add_option("--allreduce", o.allreduce(),
                  "gradient all-reduce across machines: auto (hierarchical when the job spans several hosts with "
                  "several ranks each, placed round-robin), flat or hierarchical")
      ->check(CLI::IsMember({"auto", "flat", "hierarchical"}))
      ->capture_default_str();
  cmd->add_option("--bucket-cap", o.bucket_cap(),
                  "DDP gradient bucket size in MB, or auto: chosen after two steps from when the model's gradients "
                  "are ready and the measured all-reduce cost")
      ->capture_default_str();
  cmd->add_flag("--overlap-optimizer", o.overlap_optimizer(),
                "step the optimizer inside backward, one gradient bucket at a time as each is reduced, behind the "
                "buckets still on the wire (not with --clip-grad-norm, --amp, --skip-nonfinite-loss or --zero)");
  cmd->add_option("--comm-hook", o.comm_hook(),
                  "what DDP sends for the gradients: none, fp16 or bf16 (cast to 16 bits), powersgd (low-rank "
                  "approximations with error feedback; for slow links)")
      ->check(CLI::IsMember({"none", "fp16", "bf16", "powersgd"}))
      ->capture_default_str();
  cmd->add_option("--powersgd-rank", o.powersgd_rank(),
                  "--comm-hook powersgd: rank of each gradient's approximation (1-4 typical)")
      ->capture_default_str();
  cmd->add_option("--powersgd-start", o.powersgd_start(),
                  "--comm-hook powersgd: steps all-reduced exactly before compression starts")
      ->capture_default_str();
  cmd->add_option("--zero", o.zero_stage(),
                  "ZeRO stage: 1 shards the optimizer state over the ranks (1/world of Adam's moments each), 2 the "
                  "gradients too (reduce-scattered in every backward); 0 off")
      ->check(CLI::Range(0, 2))
      ->capture_default_str();
}

// What the run writes and when it evaluates.
void add_output_options(CLI::App& command, TrainCommand& train) {
  CLI::App* cmd = &command;
  TrainerOptions& o = train.options;
  cmd->add_option("--out", train.out, "write the trained model here (TorchScript; torch.jit.load reads it)");
  cmd->add_option("--checkpoint-dir", o.checkpoint_dir(), "write checkpoints here (rank 0, atomic)");
  cmd->add_option("--checkpoint-every", o.checkpoint_every_steps(), "also checkpoint every N steps (0: per epoch)");
  cmd->add_option("--keep-checkpoints", o.keep_checkpoints(), "keep the newest K checkpoints")->capture_default_str();
  cmd->add_option("--keep-best", o.keep_best(),
                  "also keep the checkpoint of the best evaluation of METRIC as best.pt (test_loss, test_accuracy, "
                  "val_<name>)");
  cmd->add_option("--resume", o.resume(),
                  "continue from a checkpoint file, or (no value / 'latest') the newest in --checkpoint-dir")
      ->expected(0, 1);
  cmd->add_option("--metrics", o.metrics_file(), "JSON-lines metrics file ('' to disable)")->capture_default_str();
  cmd->add_option("--tensorboard", o.tensorboard_dir(),
                  "write TensorBoard event files here (rank 0): tensorboard --logdir DIR");
  cmd->add_flag_callback(
      "--no-progress", [&o] { o.progress_bar(false); }, "no progress bar on an interactive terminal");
  cmd->add_option("--plot", train.plot)->group("");  // removed; see the error it gives
  cmd->add_option("--log-every", o.log_every_steps(), "log the loss every N steps")->capture_default_str();
  cmd->add_option("--straggler-threshold", o.straggler_threshold(),
                  "name a rank whose busy time per step is this many times the others' (3 log intervals in a row)")
      ->capture_default_str();
  cmd->add_flag_callback(
      "--no-eval", [&o] { o.eval_each_epoch(false); }, "skip evaluation on the test split");
  cmd->add_option("--eval-every", o.eval_every_steps(),
                  "also evaluate every N optimizer steps (0: at epoch ends only)");
  cmd->add_option("--early-stopping-patience", o.early_stopping_patience(),
                  "end the run once --early-stopping-metric has not improved for N evaluations (0: off)");
  cmd->add_option("--early-stopping-metric", o.early_stopping_metric(),
                  "test_loss (lower is better), test_accuracy or val_<name> of validation_step (higher is better "
                  "unless the name has 'loss')")
      ->capture_default_str();
}

}  // namespace

void add_train_command(CLI::App& app, CommonArgs& common, TrainCommand& train) {
  train.options = cli_defaults();
  TrainerOptions& o = train.options;
  CLI::App* cmd = app.add_subcommand("train", "train a model; prints time and test accuracy");
  train.app = cmd;
  add_common_options(*cmd, common, o, /*model_required=*/false);
  cmd->add_option("--epochs", o.epochs(), "passes over the training set")->capture_default_str();
  cmd->add_option("--max-steps", o.max_steps(), "stop after this many optimizer steps (0: no limit)");
  cmd->add_option("--stop-after-steps", o.stop_after_steps(),
                  "end this run after N steps with a checkpoint; the plan (schedule) is unchanged, continue with "
                  "--resume");
  cmd->add_option("--optimizer", o.optimizer().name(), "sgd, adam or adamw")->capture_default_str();
  cmd->add_option("--lr", o.optimizer().lr(), "learning rate")->capture_default_str();
  cmd->add_option("--momentum", o.optimizer().momentum(), "SGD momentum")->capture_default_str();
  cmd->add_option("--weight-decay", o.optimizer().weight_decay(), "L2 (sgd, adam) or decoupled (adamw) weight decay");
  cmd->add_option("--weight-decay-exclude", o.optimizer().weight_decay_exclude(),
                  "parameters left out of weight decay (a second parameter group): bias, norm (1-D gains), "
                  "embedding, or glob patterns of parameter names; comma-separated")
      ->delimiter(',');
  cmd->add_flag("--nesterov", o.optimizer().nesterov(), "Nesterov momentum (sgd)");
  cmd->add_flag("--augment", train.augment,
                "augment training images (random crop with 4 px padding, horizontal flip) on the workers");
  cmd->add_option("--transform", train.transform,
                  "per-sample transform written in PyTorch: a TorchScript module, forward(x) or forward(x, seed: "
                  "int), run on the workers after --augment");
  cmd->add_option("--adam-betas", train.adam_betas, "adam, adamw: beta1,beta2 (language models often take 0.9,0.95)")
      ->delimiter(',')
      ->expected(2);
  cmd->add_option("--lr-schedule", o.schedule().kind(), "constant, step or cosine")->capture_default_str();
  cmd->add_option("--warmup-steps", o.schedule().warmup_steps(), "linear warmup steps (any schedule)");
  cmd->add_option("--lr-step-size", o.schedule().step_size(), "step schedule: steps between decays");
  cmd->add_option("--lr-gamma", o.schedule().gamma(), "step schedule: decay factor");
  cmd->add_option("--min-lr", o.schedule().min_lr(), "cosine schedule: final learning rate");
  cmd->add_option("--seed", o.seed(), "seed of the model's initialisation, data order and dropout");
  cmd->add_flag_callback(
      "--no-shuffle", [&o] { o.shuffle(false); }, "keep the data in file order (deterministic sharding)");
  cmd->add_option("--loss", o.loss(),
                  "cross_entropy or nll (class targets), mse, l1, smooth_l1, bce_with_logits (targets shaped like "
                  "the outputs); ignored when the model defines training_step")
      ->capture_default_str();
  cmd->add_option("--label-smoothing", o.label_smoothing(),
                  "cross_entropy: label smoothing in [0, 1) (PyTorch's label_smoothing)")
      ->capture_default_str();
  cmd->add_option("--top-k", o.top_k(), "evaluation also reports the top-k accuracy (e.g. 5; 0: off)");
  cmd->add_option("--ignore-index", o.ignore_index(),
                  "cross_entropy / nll: targets equal to this are left out of the loss (PyTorch's ignore_index)")
      ->capture_default_str();
  cmd->add_option("--accumulation-steps", o.accumulation_steps(),
                  "micro-batches per optimizer step (gradients synchronised on the last only)");
  cmd->add_option("--clip-grad-norm", o.grad_clip_norm(), "clip the global gradient norm (0: off)");
  cmd->add_option("--precision", o.precision(),
                  "fp32; bf16: autocast on the CPU or GPU, fp32 weights and optimizer state, no loss scaling; fp16: "
                  "--amp")
      ->capture_default_str();
  cmd->add_option("--peak-tflops", train.peak_tflops,
                  "token data: one device's peak TFLOP/s for the MFU (0: a matmul timed at the start)");
  cmd->add_flag("--amp", o.mixed_precision(), "mixed precision (CUDA): fp16 autocast + dynamic loss scaling");
  cmd->add_flag("--skip-nonfinite-loss", o.skip_nonfinite_loss(),
                "skip steps whose loss is NaN/Inf instead of stopping with an error");
  add_communication_options(*cmd, o);
  add_output_options(*cmd, train);
}

int run_train(const CommonArgs& common, TrainCommand& train) {
  TrainerOptions& options = train.options;
  finish_options(train);
  check_train(common, train);
  // SIGTERM / SIGINT / SIGUSR1: checkpoint at the next step boundary, exit with kExitStopped.
  StopRequest::install();
  auto start = std::chrono::steady_clock::now();
  Runtime runtime(runtime_options(common));
  auto world = runtime.world();
  options.device(pick_device(common, runtime));
  const auto data = data_options(common);
  if (!train.transform.empty()) {
    const std::string& path = train.transform;
    auto bytes = bytes_from_rank0(world, [&] { return read_file(path); });  // rank 0 reads it
    options.train_transform(compose({options.train_transform(), script_transform(path, std::move(bytes))}));
  }
  auto source = open_train_source(data, source_options(options), world);
  auto test = options.eval_each_epoch() ? open_split(data, "test", world) : nullptr;
  auto first = source->first_samples(1);
  auto sample = first.first.map([](const torch::Tensor& t) { return t[0]; });
  Model model =
      open_model(common, world, sample, source->largest_label(),
                 source->dataset() ? declared_classes(*source->dataset()) : std::nullopt, options.seed(), options);
  if (model.is_exported()) options.loss(package_loss(model, options.loss(), options.eval_each_epoch()));
  if (detect_data(common.data) == DataKind::TokenFile) {
    ModelZooOptions shape;
    shape.context = common.context, shape.gpt_layers = common.gpt_layers, shape.gpt_dim = common.gpt_dim;
    options.flops_per_token(flops_per_token(common.model, shape, model));
    const Peak peak = device_peak(train.peak_tflops, options.device(),
                                  options.precision() == "bf16" ? torch::kBFloat16 : torch::kFloat);
    options.peak_tflops(peak.tflops);
    DPT_LOG_INFO("MFU: {:.3g} FLOP per token trained, against a peak of {:.3g} TFLOP/s per rank ({})",
                 options.flops_per_token(), peak.tflops, peak.how);
  }
  Trainer trainer(model, world, options);
  DPT_LOG_INFO("dptrain train: {} in {} ({}), model {}, {} rank(s) on {} ({})", source->describe(), common.data,
               describe(detect_data(common.data)), common.model, world->size(), options.device().str(),
               runtime.backend());
  TrainResult result = trainer.fit(*source, test.get());
  if (!train.out.empty() && world->rank() == 0) save_model(model, train.out, data);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (world->rank() == 0) {
    std::cout << "dptrain train: " << result.steps << " steps, " << result.epochs_completed << " epoch(s) on "
              << world->size() << " rank(s) in " << std::fixed << std::setprecision(1) << seconds << " s";
    if (result.final_eval) std::cout << "; " << describe(*result.final_eval);
    if (result.stopped_by_early_stopping) std::cout << " (early stopping)";
    std::cout << (result.stopped_early ? " (stopped early; continue with --resume)" : "") << std::endl;
  }
  world->barrier();
  return result.stopped_on_request ? kExitStopped : 0;
}

}  // namespace dpt::cli
