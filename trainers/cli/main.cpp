// dptrain: train, evaluate and run inference on C++ built-in or TorchScript models, one process
// per rank under mpirun (or srun / torchrun-style environments). See docs/cli.md.
//
//   mpirun -np 2 dptrain train                                  # the built-in CNN on Fashion-MNIST
//   mpirun -np 2 dptrain train --model net.pt --out trained.pt  # a torch.jit.script'ed model
//   mpirun -np 2 dptrain eval  --model trained.pt
//   mpirun -np 2 dptrain infer --model trained.pt --out logits.pt   # torch.load("logits.pt")
//
// Everything that can be checked without the other ranks (option ranges, paths, the data
// directory, writable outputs) is checked before MPI starts: one error line, exit code 2.
#include <CLI/CLI.hpp>

#include <chrono>
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <string>

#include "config_file.h"
#include "data_sources.h"
#include "model_files.h"
#include "dptrain/core/data/idx_dataset.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/model.h"
#include "dptrain/core/operators.h"
#include "dptrain/core/run_main.h"
#include "dptrain/core/serialize.h"
#include "dptrain/core/stop_request.h"
#include "dptrain/parallel/launch_info.h"
#include "dptrain/parallel/runtime.h"
#include "dptrain/trainers/model_zoo.h"
#include "dptrain/trainers/trainer.h"

namespace {

const char* kDefaultData = "/usr/share/datasets/fashion-mnist";

// Options shared by the three subcommands.
struct CommonArgs {
  std::string model = "cnn";
  std::string data = kDefaultData;
  int64_t batch_size = 64;
  int64_t limit_samples = 0;
  int workers = 0;
  std::string backend;
  double timeout_s = 0;
  std::string log_level;
  std::string device;
  int64_t image_size = 0;
  int64_t max_image_pixels = dpt::kDefaultMaxImagePixels;
  int64_t num_classes = 0;
  std::vector<double> mean, std;
  std::vector<std::string> load_ops;
  std::string weights;
};

struct TrainArgs {
  int64_t epochs = 3;
  int64_t max_steps = 0;
  int64_t stop_after_steps = 0;
  std::string optimizer = "adam";
  double lr = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool augment = false;
  std::string transform;
  std::string lr_schedule = "cosine";
  int64_t warmup_steps = 0;
  int64_t lr_step_size = 1000;
  double lr_gamma = 0.1;
  double min_lr = 0.0;
  int64_t seed = 0;
  bool no_shuffle = false;
  std::string loss = "cross_entropy";
  int64_t accumulation_steps = 1;
  double clip_grad_norm = 0.0;
  int zero = 0;
  std::string allreduce = "auto";
  std::string comm_hook = "none";
  int64_t powersgd_rank = 1;
  int64_t powersgd_start = 10;
  bool amp = false;
  bool skip_nonfinite_loss = false;
  std::string out;
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  int keep_checkpoints = 3;
  std::string resume;
  bool resume_given = false;
  std::string metrics = "dptrain-metrics.jsonl";
  bool metrics_given = false;  // the default file is optional: a failed write is a warning
  std::string tensorboard;
  bool no_progress = false;
  std::string plot;  // removed option: '' is still accepted, a file gets the way to the curves
  int64_t log_every = 100;
  bool no_eval = false;
};

struct InferArgs {
  std::string out;
  std::string split = "test";
};

void add_common(CLI::App& command, CommonArgs& args, bool model_required) {
  // An option given twice takes the last value, so scripts can append overrides.
  command.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  auto model = command.add_option("--model", args.model,
                                  "built-in model (mlp, cnn, resnet18) or a TorchScript file (torch.jit.script(...).save)");
  if (model_required) model->required();
  else model->capture_default_str();
  command.add_option("--data", args.data,
                     "data directory: MNIST IDX files, train.pt/test.pt tensor files, train-00000.pt... shards, or "
                     "an image folder train/<class>/*.png|jpg (detected; see docs/data.md)")
      ->capture_default_str();
  command.add_option("--image-size", args.image_size,
                     "image folders: resize the shorter side to N, then centre-crop N x N (0: keep the size)");
  command.add_option("--max-image-pixels", args.max_image_pixels,
                     "image folders: refuse images of more pixels before decoding them (decompression bombs)")
      ->capture_default_str();
  command.add_option("--num-classes", args.num_classes,
                     "built-in models: output classes (0: the classes the data declares - an image folder's, a tensor "
                     "file's num_classes - else the largest label + 1, at least 10)");
  command.add_option("--mean", args.mean, "image folders: per-channel mean to subtract (one value or one per channel)")
      ->delimiter(',');
  command.add_option("--std", args.std, "image folders: per-channel std to divide by")->delimiter(',');
  command.add_option("--batch-size", args.batch_size, "samples per rank per step")->capture_default_str();
  command.add_option("--limit-samples", args.limit_samples, "use only the first N samples of each split (0: all)");
  command.add_option("--workers", args.workers,
                     "preprocessing threads preparing the next training batches (0: inline)");
  command.add_option("--backend", args.backend, "communication backend: mpi, nccl, store (default: automatic)");
  command.add_option("--timeout", args.timeout_s, "seconds before a stuck collective fails the job (default 300)");
  command.add_option("--log-level", args.log_level, "trace, debug, info, warn, error, critical, off");
  command.add_option("--device", args.device, "cpu or cuda (default: the rank's GPU when there is one)");
  command.add_option("--load-ops", args.load_ops,
                     "library registering custom operators the model calls (repeatable; also DPTRAIN_LOAD_OPS, "
                     "colon-separated), loaded on every rank before the model is read")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  command.add_option("--weights", args.weights,
                     "start from this state_dict (torch.save(model.state_dict()), the --out of a compiled package, "
                     "or a checkpoint's model)");
}

// --- validation before MPI -----------------------------------------------------------------------

// This process's rank from the launcher's variables (before MPI is up); 0 without a launcher.
int launch_rank() { return dpt::detect_launch().rank; }

void check_common(const CommonArgs& args) {
  DPT_CHECK(args.batch_size > 0, InvalidArgumentError, "--batch-size must be > 0, got ", args.batch_size);
  DPT_CHECK(args.limit_samples >= 0, InvalidArgumentError, "--limit-samples must be >= 0, got ", args.limit_samples);
  DPT_CHECK(args.workers >= 0, InvalidArgumentError, "--workers must be >= 0, got ", args.workers);
  // Converted to milliseconds in an int64: beyond about 292 million years it would wrap.
  DPT_CHECK(std::isfinite(args.timeout_s) && args.timeout_s >= 0 && args.timeout_s <= 1e9, InvalidArgumentError,
            "--timeout must be between 0 and 1e9 seconds, got ", args.timeout_s);
  DPT_CHECK(args.device.empty() || args.device == "cpu" || args.device == "cuda", InvalidArgumentError,
            "--device must be cpu or cuda, got '", args.device, "'");
  if (!args.log_level.empty()) dpt::log::parse_level(args.log_level);
  DPT_CHECK(args.image_size >= 0, InvalidArgumentError, "--image-size must be >= 0, got ", args.image_size);
  DPT_CHECK(args.max_image_pixels > 0, InvalidArgumentError, "--max-image-pixels must be > 0, got ",
            args.max_image_pixels);
  DPT_CHECK(args.num_classes >= 0, InvalidArgumentError, "--num-classes must be >= 0, got ", args.num_classes);
  DPT_CHECK(args.num_classes == 0 || dpt::is_builtin_model(args.model), InvalidArgumentError,
            "--num-classes sets the output size of a built-in model; ", args.model, " has its own");
  for (double s : args.std) DPT_CHECK(s > 0, InvalidArgumentError, "--std values must be > 0, got ", s);
  dpt::cli::detect_data(args.data);  // one error naming what was looked for
  // Every rank, before any model is read: a model calling torch.ops.<lib>.* needs them.
  for (const auto& library : dpt::operator_libraries_from_env()) dpt::load_operator_library(library);
  for (const auto& library : args.load_ops) dpt::load_operator_library(library);
  // Rank 0 alone reads the model and weights files and sends them to the others (no shared file
  // system needed), so only rank 0 looks for them.
  if (launch_rank() == 0) {
    DPT_CHECK(dpt::is_builtin_model(args.model) || dpt::fs::is_regular_file(args.model), InvalidArgumentError,
              "--model ", args.model, ": neither a built-in model (mlp, cnn, resnet18) nor an existing TorchScript file");
    DPT_CHECK(args.weights.empty() || dpt::fs::is_regular_file(args.weights), InvalidArgumentError, "--weights ",
              args.weights, ": no such file");
  }
}

// A file dptrain writes whole (atomically: a temporary renamed over it). `stream`: appended to
// as the run goes (--metrics), where a device such as /dev/stdout is fine.
void check_output(const std::string& flag, const std::string& path, bool stream = false) {
  if (path.empty()) return;
  DPT_CHECK(!dpt::fs::is_directory(path), InvalidArgumentError, flag, " ", path, " is a directory, expected a file path");
  // Written to a temporary file renamed over it: a device node or FIFO there would be replaced.
  DPT_CHECK(stream || !dpt::fs::exists(path) || dpt::fs::is_regular_file(path), InvalidArgumentError, flag, " ", path,
            " exists and is not a regular file");
  DPT_CHECK(dpt::fs::parent_is_writable(path), InvalidArgumentError, flag, " ", path,
            ": its directory does not exist or is not writable");
}

// --augment: random crop (4 px of zero padding, the image's own size) and horizontal flip.
dpt::Transform augmentation() {
  auto crop = [](dpt::Example example, dpt::SampleRng& rng) {
    const int64_t size = example.input.tensor("--augment: the inputs").size(-1);
    return dpt::RandomCrop(size, 4)(std::move(example), rng);
  };
  return dpt::compose({crop, dpt::RandomHorizontalFlip(0.5)});
}

dpt::TrainerOptions trainer_options(const CommonArgs& common, const TrainArgs& args) {
  return dpt::TrainerOptions()
      .epochs(args.epochs)
      .max_steps(args.max_steps)
      .stop_after_steps(args.stop_after_steps)
      .batch_size(common.batch_size)
      .eval_batch_size(std::max<int64_t>(common.batch_size, 512))
      .accumulation_steps(args.accumulation_steps)
      .workers(common.workers)
      .train_transform(args.augment ? augmentation() : dpt::Transform())
      .optimizer(dpt::OptimizerOptions()
                     .name(args.optimizer)
                     .lr(args.lr)
                     .momentum(args.optimizer == "sgd" ? args.momentum : 0.0)
                     .weight_decay(args.weight_decay)
                     .nesterov(args.nesterov))
      .schedule(dpt::LrScheduleOptions()
                    .kind(args.lr_schedule)
                    .warmup_steps(args.warmup_steps)
                    .step_size(args.lr_step_size)
                    .gamma(args.lr_gamma)
                    .min_lr(args.min_lr))
      .grad_clip_norm(args.clip_grad_norm)
      .zero_stage(args.zero)
      .allreduce(args.allreduce)
      .comm_hook(args.comm_hook)
      .powersgd_rank(args.powersgd_rank)
      .powersgd_start(args.powersgd_start)
      .mixed_precision(args.amp)
      .shuffle(!args.no_shuffle)
      .seed(args.seed)
      .loss(args.loss)
      .skip_nonfinite_loss(args.skip_nonfinite_loss)
      .eval_each_epoch(!args.no_eval)
      .checkpoint_dir(args.checkpoint_dir)
      .checkpoint_every_steps(args.checkpoint_every)
      .keep_checkpoints(args.keep_checkpoints)
      .resume(args.resume_given ? (args.resume.empty() ? "latest" : args.resume) : "")
      .metrics_file(args.metrics)
      .metrics_optional(!args.metrics_given)
      .tensorboard_dir(args.tensorboard)
      .progress_bar(!args.no_progress)
      .log_every_steps(args.log_every);
}

// --- after MPI ----------------------------------------------------------------------------------


dpt::RuntimeOptions runtime_options(const CommonArgs& args) {
  dpt::RuntimeOptions options;
  options.backend = args.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args.timeout_s * 1000));
  options.log_level = args.log_level;
  options.device = args.device;
  return options;
}

torch::Device pick_device(const CommonArgs& args, const dpt::Runtime& runtime) {
  if (args.device == "cpu") return torch::kCPU;
  if (args.device == "cuda") {
    DPT_CHECK(runtime.device().is_cuda(), InvalidArgumentError, "--device cuda: no CUDA device on this machine");
  }
  return runtime.device();
}

dpt::cli::DataOptions data_options(const CommonArgs& args) {
  dpt::cli::DataOptions options;
  options.directory = args.data;
  options.limit_samples = args.limit_samples;
  options.images.image_size = args.image_size;
  options.images.max_pixels = args.max_image_pixels;
  options.images.mean = args.mean;
  options.images.std = args.std;
  return options;
}

// --model, then --weights. A compiled package runs on the device it was compiled for unless
// --device says otherwise (then one error if it cannot).
dpt::Model open_model(const CommonArgs& common, const dpt::CommunicatorPtr& world, const dpt::Tensors& sample,
                      std::optional<int64_t> max_label, std::optional<int64_t> declared_classes, int64_t seed,
                      dpt::TrainerOptions& options) {
  // A built-in model's outputs: --num-classes, else the classes the data declares, else the labels'.
  const int64_t classes = common.num_classes > 0 ? common.num_classes : declared_classes.value_or(0);
  dpt::Model model = dpt::cli::load_model(common.model, world, sample, max_label, classes, seed, options.device());
  if (model.is_exported() && common.device.empty()) options.device(model.exported().device());
  if (!common.weights.empty()) dpt::cli::load_weights(model, common.weights, world);
  return model;
}

int run_train(const CommonArgs& common, const TrainArgs& args) {
  check_common(common);
  auto options = trainer_options(common, args);
  // The rank's own GPU is known once the Runtime is up; cuda:0 stands for it in the early checks
  // (--amp needs a CUDA device).
  const bool cuda = common.device != "cpu" && torch::cuda::is_available();
  options.device(cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU));
  dpt::validate(options, launch_rank() == 0);
  DPT_CHECK(args.transform.empty() || launch_rank() != 0 || dpt::fs::is_regular_file(args.transform),
            InvalidArgumentError, "--transform ", args.transform, ": no such file");
  check_output("--out", args.out);
  check_output("--metrics", args.metrics, /*stream=*/true);
  DPT_CHECK(args.plot.empty(), InvalidArgumentError, "--plot was removed: watch the curves with --tensorboard DIR, "
            "or draw them from the metrics file with `python python/dptrain_plot.py ", args.metrics.empty() ? "METRICS" : args.metrics,
            " -o ", args.plot, "` (bin/dptrain-plot when installed)");
  if (!args.checkpoint_dir.empty()) {
    DPT_CHECK(!dpt::fs::exists(args.checkpoint_dir) || dpt::fs::is_directory(args.checkpoint_dir),
              InvalidArgumentError, "--checkpoint-dir ", args.checkpoint_dir, " exists and is not a directory");
    DPT_CHECK(dpt::fs::exists(args.checkpoint_dir) || dpt::fs::parent_is_writable(args.checkpoint_dir),
              InvalidArgumentError, "--checkpoint-dir ", args.checkpoint_dir, " cannot be created");
  }

  // SIGTERM / SIGINT / SIGUSR1: checkpoint at the next step boundary, exit with kExitStopped.
  dpt::StopRequest::install();
  auto start = std::chrono::steady_clock::now();
  dpt::Runtime runtime(runtime_options(common));
  auto world = runtime.world();
  options.device(pick_device(common, runtime));
  const auto data = data_options(common);
  if (!args.transform.empty()) {
    const std::string& path = args.transform;
    auto bytes = dpt::bytes_from_rank0(world, [&] { return dpt::read_file(path); });  // rank 0 reads it
    options.train_transform(dpt::compose({options.train_transform(), dpt::script_transform(path, std::move(bytes))}));
  }
  auto train = dpt::cli::open_train_source(data, dpt::source_options(options), world);
  auto test = args.no_eval ? nullptr : dpt::cli::open_split(data, "test", world);
  auto first = train->first_samples(1);
  auto sample = first.first.map([](const torch::Tensor& t) { return t[0]; });
  dpt::Model model = open_model(common, world, sample, train->largest_label(),
                                train->dataset() ? dpt::declared_classes(*train->dataset()) : std::nullopt, args.seed,
                                options);
  if (model.is_exported()) options.loss(dpt::cli::package_loss(model, args.loss, !args.no_eval));
  dpt::Trainer trainer(model, world, options);
  DPT_LOG_INFO("dptrain train: {} in {} ({}), model {}, {} rank(s) on {} ({})", train->describe(), common.data,
               dpt::cli::describe(dpt::cli::detect_data(common.data)), common.model, world->size(),
               options.device().str(), runtime.backend());
  dpt::TrainResult result = trainer.fit(*train, test.get());
  if (!args.out.empty() && world->rank() == 0 && model.is_exported()) {
    dpt::cli::save_state_dict(model, args.out);
    DPT_LOG_INFO("state_dict saved to {} (PyTorch: model.load_state_dict(torch.load(\"{}\")))", args.out, args.out);
  } else if (!args.out.empty() && world->rank() == 0) {
    model.eval();
    auto saved = model.torchscript();
    // Image folders: the class of label i travels with the model (`infer` prints them).
    if (auto classes = dpt::cli::class_names(data); !classes.empty()) {
      c10::List<std::string> names;
      for (const auto& name : classes) names.push_back(name);
      if (saved.hasattr("class_names")) saved.setattr("class_names", names);
      else saved.register_attribute("class_names", c10::ListType::ofStrings(), names);
    }
    dpt::write_file_atomic(args.out, dpt::serialize_module(saved));  // the old file stays if this fails
    DPT_LOG_INFO("model saved to {} (TorchScript: torch.jit.load)", args.out);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (world->rank() == 0) {
    std::cout << "dptrain train: " << result.steps << " steps, " << result.epochs_completed << " epoch(s) on "
              << world->size() << " rank(s) in " << std::fixed << std::setprecision(1) << seconds << " s";
    if (result.final_eval) std::cout << "; " << dpt::describe(*result.final_eval);
    std::cout << (result.stopped_early ? " (stopped early; continue with --resume)" : "") << std::endl;
  }
  world->barrier();
  return result.stopped_on_request ? dpt::kExitStopped : 0;
}

int run_eval(const CommonArgs& common) {
  check_common(common);
  auto start = std::chrono::steady_clock::now();
  dpt::Runtime runtime(runtime_options(common));
  auto world = runtime.world();
  auto test_split = dpt::cli::open_split(data_options(common), "test", world);
  const auto& test = *test_split;
  auto options = dpt::TrainerOptions().batch_size(common.batch_size).eval_batch_size(common.batch_size)
                     .device(pick_device(common, runtime));
  dpt::Model model =
      open_model(common, world, test.get(0).input, dpt::largest_label(test), dpt::declared_classes(test), 0, options);
  if (model.is_exported()) options.loss(dpt::cli::package_loss(model, "cross_entropy", /*evaluates=*/true));
  dpt::Trainer trainer(model, world, options);
  trainer.check_model_fits(test);
  auto result = trainer.evaluate(test);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (world->rank() == 0) {
    std::cout << "dptrain eval: " << result.samples << " test samples on " << world->size() << " rank(s): "
              << dpt::describe(result) << " (" << std::fixed << std::setprecision(1) << seconds << " s)" << std::endl;
  }
  return 0;
}

int run_infer(const CommonArgs& common, const InferArgs& args) {
  check_common(common);
  DPT_CHECK(args.split == "test" || args.split == "train", InvalidArgumentError, "--split must be test or train, got '",
            args.split, "'");
  check_output("--out", args.out);
  dpt::Runtime runtime(runtime_options(common));
  auto world = runtime.world();
  auto split = dpt::cli::open_split(data_options(common), args.split, world);
  const auto& data = *split;
  auto options = dpt::TrainerOptions().batch_size(common.batch_size).eval_batch_size(common.batch_size)
                     .device(pick_device(common, runtime));
  dpt::Model model =
      open_model(common, world, data.get(0).input, dpt::largest_label(data), dpt::declared_classes(data), 0, options);
  dpt::Trainer trainer(model, world, options);
  auto outputs = trainer.predict(data);
  if (world->rank() == 0) {
    dpt::write_file_atomic(args.out, torch::pickle_save(outputs));
    std::cout << "dptrain infer: outputs of shape " << outputs.sizes() << " for the " << args.split
              << " split written to " << args.out << " (python: torch.load(\"" << args.out << "\"))" << std::endl;
    if (model.is_torchscript() && model.torchscript().hasattr("class_names")) {
      std::cout << "classes (column i is class i):";
      for (const auto& name : model.torchscript().attr("class_names").toListRef()) std::cout << " " << name.toStringRef();
      std::cout << std::endl;
    }
  }
  world->barrier();
  return 0;
}

// Replaces `--config FILE` (or --config=FILE) by the file's options for the subcommand, placed
// right after the subcommand's name so that what the command line says takes precedence.
void insert_config_arguments(std::vector<std::string>& args, const std::vector<CLI::App*>& commands) {
  // The subcommand: the first argument naming one.
  auto find_command = [&]() -> std::pair<size_t, CLI::App*> {
    for (size_t i = 0; i < args.size(); ++i) {
      for (auto* candidate : commands) {
        if (args[i] == candidate->get_name()) return {i, candidate};
      }
    }
    return {args.size(), nullptr};
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const bool joined = args[i].rfind("--config=", 0) == 0;
    if (args[i] != "--config" && !joined) continue;
    DPT_CHECK(joined || i + 1 < args.size(), InvalidArgumentError, "--config needs a file");
    const std::string path = joined ? args[i].substr(9) : args[i + 1];
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i + (joined ? 1 : 2)));
    const auto [command, app] = find_command();
    DPT_CHECK(app != nullptr, InvalidArgumentError, "--config ", path, ": name the subcommand (dptrain train --config ",
              path, ")");
    auto from_file = dpt::cli::config_arguments(path, app->get_name(), *app);
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(command + 1), from_file.begin(), from_file.end());
    return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  return dpt::run_main("dptrain", [&]() -> int {
    // Rank-aware logging from the first line, before MPI starts (only rank 0 logs info).
    try {
      auto launch = dpt::detect_launch();
      dpt::log::init(launch.rank, launch.world_size);
    } catch (const dpt::Error&) {
      // Runtime reports inconsistent launcher variables later, with the full message.
    }
    CLI::App app{"dptrain: data-parallel training of C++ and TorchScript models (mpirun -np N dptrain ...)", "dptrain"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "help for every subcommand");

    CommonArgs common;
    TrainArgs train;
    InferArgs infer;

    auto* train_cmd = app.add_subcommand("train", "train a model; prints time and test accuracy");
    add_common(*train_cmd, common, false);
    train_cmd->add_option("--epochs", train.epochs, "passes over the training set")->capture_default_str();
    train_cmd->add_option("--max-steps", train.max_steps, "stop after this many optimizer steps (0: no limit)");
    train_cmd->add_option("--stop-after-steps", train.stop_after_steps,
                          "end this run after N steps with a checkpoint; the plan (schedule) is unchanged, "
                          "continue with --resume");
    train_cmd->add_option("--optimizer", train.optimizer, "sgd, adam or adamw")->capture_default_str();
    train_cmd->add_option("--lr", train.lr, "learning rate")->capture_default_str();
    train_cmd->add_option("--momentum", train.momentum, "SGD momentum")->capture_default_str();
    train_cmd->add_option("--weight-decay", train.weight_decay, "L2 (sgd, adam) or decoupled (adamw) weight decay");
    train_cmd->add_flag("--nesterov", train.nesterov, "Nesterov momentum (sgd)");
    train_cmd->add_flag("--augment", train.augment,
                        "augment training images (random crop with 4 px padding, horizontal flip) on the workers");
    train_cmd->add_option("--transform", train.transform,
                          "per-sample transform written in PyTorch: a TorchScript module, forward(x) or forward(x, "
                          "seed: int), run on the workers after --augment");
    train_cmd->add_option("--lr-schedule", train.lr_schedule, "constant, step or cosine")->capture_default_str();
    train_cmd->add_option("--warmup-steps", train.warmup_steps, "linear warmup steps (any schedule)");
    train_cmd->add_option("--lr-step-size", train.lr_step_size, "step schedule: steps between decays");
    train_cmd->add_option("--lr-gamma", train.lr_gamma, "step schedule: decay factor");
    train_cmd->add_option("--min-lr", train.min_lr, "cosine schedule: final learning rate");
    train_cmd->add_option("--seed", train.seed, "seed of the model's initialisation, data order and dropout");
    train_cmd->add_flag("--no-shuffle", train.no_shuffle, "keep the data in file order (deterministic sharding)");
    train_cmd->add_option("--loss", train.loss,
                          "cross_entropy or nll (class targets), mse, l1, smooth_l1, bce_with_logits (targets shaped "
                          "like the outputs); ignored when the model defines training_step")
        ->capture_default_str();
    train_cmd->add_option("--accumulation-steps", train.accumulation_steps,
                          "micro-batches per optimizer step (gradients synchronised on the last only)");
    train_cmd->add_option("--clip-grad-norm", train.clip_grad_norm, "clip the global gradient norm (0: off)");
    train_cmd->add_option("--allreduce", train.allreduce,
                          "gradient all-reduce across machines: auto (hierarchical when the job spans several "
                          "hosts with several ranks each, placed round-robin), flat or hierarchical")
        ->check(CLI::IsMember({"auto", "flat", "hierarchical"}))
        ->capture_default_str();
    train_cmd->add_option("--comm-hook", train.comm_hook,
                          "what DDP sends for the gradients: none, fp16 or bf16 (cast to 16 bits), powersgd "
                          "(low-rank approximations with error feedback; for slow links)")
        ->check(CLI::IsMember({"none", "fp16", "bf16", "powersgd"}))
        ->capture_default_str();
    train_cmd->add_option("--powersgd-rank", train.powersgd_rank,
                          "--comm-hook powersgd: rank of each gradient's approximation (1-4 typical)")
        ->capture_default_str();
    train_cmd->add_option("--powersgd-start", train.powersgd_start,
                          "--comm-hook powersgd: steps all-reduced exactly before compression starts")
        ->capture_default_str();
    train_cmd->add_option("--zero", train.zero,
                          "ZeRO stage: 1 shards the optimizer state over the ranks (1/world of Adam's moments each), "
                          "2 the gradients too (reduce-scattered in every backward); 0 off")
        ->check(CLI::Range(0, 2))
        ->capture_default_str();
    train_cmd->add_flag("--amp", train.amp, "mixed precision (CUDA): fp16 autocast + dynamic loss scaling");
    train_cmd->add_flag("--skip-nonfinite-loss", train.skip_nonfinite_loss,
                        "skip steps whose loss is NaN/Inf instead of stopping with an error");
    train_cmd->add_option("--out", train.out, "write the trained model here (TorchScript; torch.jit.load reads it)");
    train_cmd->add_option("--checkpoint-dir", train.checkpoint_dir, "write checkpoints here (rank 0, atomic)");
    train_cmd->add_option("--checkpoint-every", train.checkpoint_every, "also checkpoint every N steps (0: per epoch)");
    train_cmd->add_option("--keep-checkpoints", train.keep_checkpoints, "keep the newest K checkpoints")
        ->capture_default_str();
    train_cmd->add_option("--resume", train.resume,
                          "continue from a checkpoint file, or (no value / 'latest') the newest in --checkpoint-dir")
        ->expected(0, 1);
    train_cmd->add_option("--metrics", train.metrics, "JSON-lines metrics file ('' to disable)")->capture_default_str();
    train_cmd->add_option("--tensorboard", train.tensorboard,
                          "write TensorBoard event files here (rank 0): tensorboard --logdir DIR");
    train_cmd->add_flag("--no-progress", train.no_progress, "no progress bar on an interactive terminal");
    train_cmd->add_option("--plot", train.plot)->group("");  // removed; see the error it gives
    train_cmd->add_option("--log-every", train.log_every, "log the loss every N steps")->capture_default_str();
    train_cmd->add_flag("--no-eval", train.no_eval, "skip evaluation on the test split");

    auto* eval_cmd = app.add_subcommand("eval", "loss and accuracy of a model on the test split");
    add_common(*eval_cmd, common, true);

    auto* infer_cmd = app.add_subcommand("infer", "outputs of a model for every sample, in order, as a tensor file");
    add_common(*infer_cmd, common, true);
    infer_cmd->add_option("--out", infer.out, "output file: a tensor [N, C] that torch.load reads")->required();
    infer_cmd->add_option("--split", infer.split, "test or train")->capture_default_str();

    // --config is read here (config_file.h), not by CLI11, whose reader lets unknown keys and
    // wrong types through; each subcommand still lists it in its help.
    std::string config_path;
    for (auto* command : {train_cmd, eval_cmd, infer_cmd}) {
      command->add_option("--config", config_path,
                          "TOML file of options: a [" + command->get_name() + "] section, keys named like the long "
                          "options; the command line overrides it");
    }
    std::vector<std::string> args(argv + 1, argv + argc);
    insert_config_arguments(args, {train_cmd, eval_cmd, infer_cmd});
    std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed
    try {
      app.parse(args);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      DPT_THROW(InvalidArgumentError, e.what(), " (see dptrain ", argc > 1 ? argv[1] : "", " --help)");
    }
    train.resume_given = train_cmd->count("--resume") > 0;
    train.metrics_given = train_cmd->count("--metrics") > 0;
    if (*train_cmd) return run_train(common, train);
    if (*eval_cmd) return run_eval(common);
    return run_infer(common, infer);
  });
}
