#include "common_options.h"

#include <cmath>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/operators.h"
#include "dptrain/core/strings.h"
#include "dptrain/parallel/runtime/launch_info.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "model_files.h"
#include "preprocessing.h"

namespace dpt::cli {

void add_common_options(CLI::App& command, CommonArgs& args, TrainerOptions& options, bool model_required) {
  // An option given twice takes the last value, so scripts can append overrides.
  command.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  auto model = command.add_option(
      "--model", args.model,
      "built-in model (mlp, cnn, resnet18; gpt, gpt2-small for token data), a TorchScript file (torch.jit.script(...).save) or a compiled "
      "package (.pt2, python/dptrain_export)");
  if (model_required)
    model->required();
  else
    model->capture_default_str();
  command
      .add_option("--data", args.data,
                  "data directory: MNIST IDX files, train.pt/test.pt tensor files, train-00000.pt... shards, "
                  "an image folder train/<class>/*.png|jpg, or token files train.bin/val.bin (detected; see "
                  "docs/data.md)")
      ->capture_default_str();
  command.add_option("--image-size", args.image_size,
                     "image folders: resize the shorter side to N, then centre-crop N x N (0: keep the size)");
  command
      .add_option("--max-image-pixels", args.max_image_pixels,
                  "image folders: refuse images of more pixels before decoding them (decompression bombs)")
      ->capture_default_str();
  command.add_option("--num-classes", args.num_classes,
                     "built-in models: output classes (0: the classes the data declares - an image folder's, a tensor "
                     "file's num_classes - else the largest label + 1, at least 10)");
  command.add_option("--mean", args.mean, "image folders: per-channel mean to subtract (one value or one per channel)")
      ->delimiter(',');
  command.add_option("--std", args.std, "image folders: per-channel std to divide by")->delimiter(',');
  command.add_option("--context", args.context, "token data (train.bin): tokens per sample window")
      ->capture_default_str();
  command.add_option("--gpt-layers", args.gpt_layers, "--model gpt: transformer blocks")->capture_default_str();
  command.add_option("--gpt-dim", args.gpt_dim, "--model gpt: embedding width")->capture_default_str();
  command.add_option("--gpt-heads", args.gpt_heads, "--model gpt: attention heads")->capture_default_str();
  command.add_option("--batch-size", options.batch_size(), "samples per rank per step")->capture_default_str();
  command.add_option("--limit-samples", args.limit_samples, "use only the first N samples of each split (0: all)");
  command.add_option("--workers", options.workers(),
                     "preprocessing threads preparing the next training batches (0: inline)");
  command.add_option("--backend", args.backend, "communication backend: mpi, nccl, store (default: automatic)");
  command.add_option("--timeout", args.timeout_s, "seconds before a stuck collective fails the job (default 300)");
  command.add_option("--log-level", args.log_level, "trace, debug, info, warn, error, critical, off");
  command.add_option("--device", args.device, "cpu or cuda (default: the rank's GPU when there is one)");
  command
      .add_option("--load-ops", args.load_ops,
                  "library registering custom operators the model calls (repeatable; also DPTRAIN_LOAD_OPS, "
                  "colon-separated), loaded on every rank before the model is read")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  command.add_option("--weights", args.weights,
                     "start from this state_dict (torch.save(model.state_dict()), the --out of a compiled package, "
                     "or a checkpoint's model)");
}

int launch_rank() {
  return detect_launch().rank;
}

void check_common(const CommonArgs& args, const TrainerOptions& options) {
  DPT_CHECK(options.batch_size() > 0, InvalidArgumentError, "--batch-size must be > 0, got ", options.batch_size());
  DPT_CHECK(args.limit_samples >= 0, InvalidArgumentError, "--limit-samples must be >= 0, got ", args.limit_samples);
  DPT_CHECK(options.workers() >= 0, InvalidArgumentError, "--workers must be >= 0, got ", options.workers());
  // Converted to milliseconds in an int64: beyond about 292 million years it would wrap.
  DPT_CHECK(std::isfinite(args.timeout_s) && args.timeout_s >= 0 && args.timeout_s <= 1e9, InvalidArgumentError,
            "--timeout must be between 0 and 1e9 seconds, got ", args.timeout_s);
  DPT_CHECK(args.device.empty() || args.device == "cpu" || args.device == "cuda", InvalidArgumentError,
            "--device must be cpu or cuda, got '", args.device, "'");
  if (!args.log_level.empty()) log::parse_level(args.log_level);
  DPT_CHECK(args.image_size >= 0, InvalidArgumentError, "--image-size must be >= 0, got ", args.image_size);
  DPT_CHECK(args.context >= 1, InvalidArgumentError, "--context must be >= 1, got ", args.context);
  DPT_CHECK(args.max_image_pixels > 0, InvalidArgumentError, "--max-image-pixels must be > 0, got ",
            args.max_image_pixels);
  DPT_CHECK(args.num_classes >= 0, InvalidArgumentError, "--num-classes must be >= 0, got ", args.num_classes);
  DPT_CHECK(args.num_classes == 0 || is_builtin_model(args.model), InvalidArgumentError,
            "--num-classes sets the output size of a built-in model; ", args.model, " has its own");
  for (double s : args.std) DPT_CHECK(s > 0, InvalidArgumentError, "--std values must be > 0, got ", s);
  detect_data(args.data);  // one error naming what was looked for
  // Every rank, before any model is read: a model calling torch.ops.<lib>.* needs them.
  for (const auto& library : operator_libraries_from_env()) load_operator_library(library);
  for (const auto& library : args.load_ops) load_operator_library(library);
  // Rank 0 alone reads the model and weights files and sends them to the others (no shared file
  // system needed), so only rank 0 looks for them.
  if (launch_rank() == 0) {
    if (!is_builtin_model(args.model) && !fs::is_regular_file(args.model)) {
      DPT_THROW(InvalidArgumentError, "--model ", args.model, ": neither a built-in model (", joined(builtin_model_names()),
                ") nor an existing TorchScript file or .pt2 package");
    }
    DPT_CHECK(args.weights.empty() || fs::is_regular_file(args.weights), InvalidArgumentError, "--weights ",
              args.weights, ": no such file");
  }
}

void check_output(const std::string& flag, const std::string& path, bool stream) {
  // A stream (--metrics) is created with its directories, as SummaryWriter and Lightning do; a
  // file written whole (--out) needs its directory, as torch.save does.
  if (path.empty()) return;
  DPT_CHECK(!fs::is_directory(path), InvalidArgumentError, flag, " ", path, " is a directory, expected a file path");
  // Written to a temporary file renamed over it: a device node or FIFO there would be replaced.
  DPT_CHECK(stream || !fs::exists(path) || fs::is_regular_file(path), InvalidArgumentError, flag, " ", path,
            " exists and is not a regular file");
  DPT_CHECK(stream ? fs::can_be_created(fs::parent_path(path)) : fs::parent_is_writable(path), InvalidArgumentError,
            flag, " ", path, ": its directory does not exist or is not writable");
}

RuntimeOptions runtime_options(const CommonArgs& args) {
  RuntimeOptions options;
  options.backend = args.backend;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args.timeout_s * 1000));
  options.log_level = args.log_level;
  options.device = args.device;
  return options;
}

torch::Device pick_device(const CommonArgs& args, const Runtime& runtime) {
  if (args.device == "cpu") return torch::kCPU;
  if (args.device == "cuda") {
    DPT_CHECK(runtime.device().is_cuda(), InvalidArgumentError, "--device cuda: no CUDA device on this machine");
  }
  return runtime.device();
}

DataOptions data_options(const CommonArgs& args) {
  DataOptions options;
  options.directory = args.data;
  options.limit_samples = args.limit_samples;
  options.images.image_size = args.image_size;
  options.images.max_pixels = args.max_image_pixels;
  options.images.mean = args.mean;
  options.images.std = args.std;
  options.context = args.context;
  return options;
}

Model open_model(const CommonArgs& common, const CommunicatorPtr& world, const Tensors& sample,
                 std::optional<int64_t> max_label, std::optional<int64_t> declared_classes, int64_t seed,
                 TrainerOptions& options) {
  // A built-in model's outputs: --num-classes, else the classes the data declares, else the labels'.
  ModelZooOptions shape;
  shape.num_classes = common.num_classes > 0 ? common.num_classes : declared_classes.value_or(0);
  shape.gpt_layers = common.gpt_layers, shape.gpt_dim = common.gpt_dim, shape.gpt_heads = common.gpt_heads;
  Model model = load_model(common.model, world, sample, max_label, shape, seed, options.device());
  if (model.is_exported() && common.device.empty()) options.device(model.exported().device());
  if (!common.weights.empty()) load_weights(model, common.weights, world);
  return model;
}

ModelOnSplit open_model_on_split(const CommonArgs& common, const CommunicatorPtr& world, const std::string& split,
                                 TrainerOptions& options) {
  DataOptions data = data_options(common);
  std::optional<Model> model;
  if (!is_builtin_model(common.model)) {
    // A file: its samples' shape is its own, so it needs none of the split to be read.
    model = open_model(common, world, Tensors(), std::nullopt, std::nullopt, 0, options);
    apply_saved_preprocessing(*model, common, data);
  }
  auto dataset = open_split(data, split, world);
  if (!model) {
    model = open_model(common, world, dataset->get(0).input, largest_label(*dataset), declared_classes(*dataset), 0,
                       options);
  }
  return {std::move(*model), std::move(dataset), std::move(data)};
}

}  // namespace dpt::cli
