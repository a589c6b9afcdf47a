// `dptrain train`: its options, bound straight onto TrainerOptions (so the Trainer's field is the
// one place a setting lives, and --help shows the value it will run with), and the run.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "common_options.h"
#include "dptrain/trainers/loop/trainer.h"

namespace dpt::cli {

struct TrainCommand {
  CLI::App* app = nullptr;
  // The command's defaults where they differ from the library's (train_command.cpp: cli_defaults).
  TrainerOptions options;
  // What train does besides the Trainer's options:
  bool augment = false;
  std::string transform;
  std::string out;
  double peak_tflops = 0;
  std::vector<double> adam_betas;  // --adam-betas B1,B2 (empty: the optimizer's defaults)  // --peak-tflops: the MFU's peak (0: a timed matmul)
  std::string plot;  // removed option: '' is still accepted, a file gets the way to the curves
};

// Adds `train` to `app`; the returned command's fields are filled by app.parse().
void add_train_command(CLI::App& app, CommonArgs& common, TrainCommand& train);
int run_train(const CommonArgs& common, TrainCommand& train);

}  // namespace dpt::cli
