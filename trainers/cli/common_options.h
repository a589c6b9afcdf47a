// What every dptrain subcommand takes (the model, the data, the runtime) and the checks made on
// it before MPI starts: one error line, exit code 2 (see docs/cli.md).
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data_sources.h"
#include "dptrain/core/data/image_folder.h"
#include "dptrain/core/model.h"
#include "dptrain/parallel/runtime/runtime.h"
#include "dptrain/trainers/loop/trainer.h"

namespace dpt::cli {

// Options shared by the three subcommands that are not the Trainer's (those are bound straight
// onto each command's TrainerOptions: --batch-size, --workers).
struct CommonArgs {
  std::string model = "cnn";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string backend;
  double timeout_s = 0;
  std::string log_level;
  std::string device;
  int64_t limit_samples = 0;
  int64_t image_size = 0;
  int64_t max_image_pixels = kDefaultMaxImagePixels;
  int64_t num_classes = 0;
  int64_t context = 256;  // token data: tokens per window
  int64_t gpt_layers = 4, gpt_dim = 128, gpt_heads = 4;
  std::vector<double> mean, std;
  std::vector<std::string> load_ops;
  std::string weights;
};

// Adds the shared options to `command`; --batch-size and --workers go to `options`.
void add_common_options(CLI::App& command, CommonArgs& args, TrainerOptions& options, bool model_required);

// This process's rank from the launcher's variables (before MPI is up); 0 without a launcher.
int launch_rank();
// Everything that can be checked alone: ranges, the data directory, the model and weights files
// (rank 0, which reads them), operator libraries loaded.
void check_common(const CommonArgs& args, const TrainerOptions& options);
// A file dptrain writes whole (atomically: a temporary renamed over it). `stream`: appended to as
// the run goes (--metrics), where a device such as /dev/stdout is fine.
void check_output(const std::string& flag, const std::string& path, bool stream = false);

RuntimeOptions runtime_options(const CommonArgs& args);
// --device, checked against what the Runtime found.
torch::Device pick_device(const CommonArgs& args, const Runtime& runtime);
DataOptions data_options(const CommonArgs& args);

// --model, then --weights. A compiled package runs on the device it was compiled for unless
// --device says otherwise (then one error if it cannot).
Model open_model(const CommonArgs& common, const CommunicatorPtr& world, const Tensors& sample,
                 std::optional<int64_t> max_label, std::optional<int64_t> declared_classes, int64_t seed,
                 TrainerOptions& options);

// eval and infer: the model and the split it is applied to. A model file is read first, so that
// the preprocessing saved with it (preprocessing.h) decodes the split; a built-in model is made
// for the split's samples.
struct ModelOnSplit {
  Model model;
  std::shared_ptr<Dataset> split;
  DataOptions data;  // as the split was opened (with the model's preprocessing)
};
ModelOnSplit open_model_on_split(const CommonArgs& common, const CommunicatorPtr& world, const std::string& split,
                                 TrainerOptions& options);

}  // namespace dpt::cli
