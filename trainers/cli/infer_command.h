// `dptrain infer`: a model's outputs for every sample of a split, in order, as one tensor file.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "common_options.h"

namespace dpt::cli {

struct InferCommand {
  CLI::App* app = nullptr;
  TrainerOptions options;  // --batch-size, --workers bound here
  std::string out;
  std::string split = "test";
};

void add_infer_command(CLI::App& app, CommonArgs& common, InferCommand& infer);
int run_infer(const CommonArgs& common, InferCommand& infer);

}  // namespace dpt::cli
