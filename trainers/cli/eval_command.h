// `dptrain eval`: the loss and accuracy of a model on the test split (the Trainer's evaluate).
#pragma once

#include <CLI/CLI.hpp>

#include "common_options.h"

namespace dpt::cli {

struct EvalCommand {
  CLI::App* app = nullptr;
  TrainerOptions options;  // --batch-size, --workers bound here
};

void add_eval_command(CLI::App& app, CommonArgs& common, EvalCommand& eval);
int run_eval(const CommonArgs& common, EvalCommand& eval);

}  // namespace dpt::cli
