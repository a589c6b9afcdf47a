#include "eval_command.h"

#include <chrono>
#include <iomanip>
#include <iostream>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/error.h"
#include "model_files.h"

namespace dpt::cli {

void add_eval_command(CLI::App& app, CommonArgs& common, EvalCommand& eval) {
  eval.app = app.add_subcommand("eval", "loss and accuracy of a model on the test split");
  add_common_options(*eval.app, common, eval.options, /*model_required=*/true);
  eval.app->add_option("--top-k", eval.options.top_k(), "also report the top-k accuracy (e.g. 5; 0: off)");
  eval.app->add_option("--ignore-index", eval.options.ignore_index(),
                       "cross_entropy / nll: targets equal to this are left out of the loss")
      ->capture_default_str();
}

int run_eval(const CommonArgs& common, EvalCommand& eval) {
  TrainerOptions& options = eval.options;
  options.eval_batch_size(options.batch_size());
  check_common(common, options);
  auto start = std::chrono::steady_clock::now();
  Runtime runtime(runtime_options(common));
  auto world = runtime.world();
  options.device(pick_device(common, runtime));
  ModelOnSplit opened = open_model_on_split(common, world, "test", options);
  Model& model = opened.model;
  const Dataset& test = *opened.split;
  if (model.is_exported()) options.loss(package_loss(model, "cross_entropy", /*evaluates=*/true));
  Trainer trainer(model, world, options);
  trainer.check_model_fits(test);
  auto result = trainer.evaluate(test);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (world->rank() == 0) {
    std::cout << "dptrain eval: " << result.samples << " test samples on " << world->size()
              << " rank(s): " << describe(result) << " (" << std::fixed << std::setprecision(1) << seconds << " s)"
              << std::endl;
  }
  return 0;
}

}  // namespace dpt::cli
