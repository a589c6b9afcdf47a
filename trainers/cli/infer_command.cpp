#include "infer_command.h"

#include <iostream>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/error.h"
#include "dptrain/core/serialize.h"
#include "model_files.h"

namespace dpt::cli {
namespace {

// logits.pt -> logits.files.txt (beside the outputs).
std::string files_list_path(const std::string& out) {
  const auto slash = out.rfind('/');
  const auto dot = out.rfind('.');
  const bool extension = dot != std::string::npos && (slash == std::string::npos || dot > slash) && dot > 0;
  return (extension ? out.substr(0, dot) : out) + ".files.txt";
}

}  // namespace

void add_infer_command(CLI::App& app, CommonArgs& common, InferCommand& infer) {
  infer.app = app.add_subcommand("infer", "outputs of a model for every sample, in order, as a tensor file");
  add_common_options(*infer.app, common, infer.options, /*model_required=*/true);
  infer.app->add_option("--out", infer.out, "output file: a tensor [N, C] that torch.load reads")->required();
  infer.app->add_option("--split", infer.split, "test or train")->capture_default_str();
}

int run_infer(const CommonArgs& common, InferCommand& infer) {
  TrainerOptions& options = infer.options;
  options.eval_batch_size(options.batch_size());
  check_common(common, options);
  DPT_CHECK(infer.split == "test" || infer.split == "train", InvalidArgumentError,
            "--split must be test or train, got '", infer.split, "'");
  check_output("--out", infer.out);
  Runtime runtime(runtime_options(common));
  auto world = runtime.world();
  options.device(pick_device(common, runtime));
  ModelOnSplit opened = open_model_on_split(common, world, infer.split, options);
  Model& model = opened.model;
  Trainer trainer(model, world, options);
  auto outputs = trainer.predict(*opened.split);
  if (world->rank() == 0) {
    write_file_atomic(infer.out, torch::pickle_save(outputs));
    std::cout << "dptrain infer: outputs of shape " << outputs.sizes() << " for the " << infer.split
              << " split written to " << infer.out << " (python: torch.load(\"" << infer.out << "\"))" << std::endl;
    // Image folders: which file each row is.
    if (auto files = sample_files(opened.data, infer.split); !files.empty()) {
      const std::string list = files_list_path(infer.out);
      std::string text;
      for (const auto& file : files) text += file + "\n";
      write_file_atomic(list, Bytes(text.begin(), text.end()));
      std::cout << "row i is the i-th file of " << list << std::endl;
    }
    if (model.is_torchscript() && model.torchscript().hasattr("class_names")) {
      std::cout << "classes (column i is class i):";
      for (const auto& name : model.torchscript().attr("class_names").toListRef())
        std::cout << " " << name.toStringRef();
      std::cout << std::endl;
    }
  }
  world->barrier();
  return 0;
}

}  // namespace dpt::cli
