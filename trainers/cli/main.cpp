// dptrain: train, evaluate and run inference on C++ built-in or TorchScript models, one process
// per rank under mpirun (or srun / torchrun-style environments). See docs/cli.md.
//
//   mpirun -np 2 dptrain train                                  # the built-in CNN on Fashion-MNIST
//   mpirun -np 2 dptrain train --model net.pt --out trained.pt  # a torch.jit.script'ed model
//   mpirun -np 2 dptrain eval  --model trained.pt
//   mpirun -np 2 dptrain infer --model trained.pt --out logits.pt   # torch.load("logits.pt")
//   dptrain generate --model gpt.pt --prompt "Once upon"         # a language model's continuation
//
// One file per subcommand (train_command.cpp, eval_command.cpp, infer_command.cpp), the options
// they share in common_options.cpp. Everything that can be checked without the other ranks
// (option ranges, paths, the data directory, writable outputs) is checked before MPI starts: one
// error line, exit code 2.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "config_file.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/runtime/launch_info.h"
#include "eval_command.h"
#include "generate_command.h"
#include "infer_command.h"
#include "train_command.h"

int main(int argc, char** argv) {
  using namespace dpt::cli;
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
    TrainCommand train;
    EvalCommand eval;
    InferCommand infer;
    GenerateCommand generate;
    add_train_command(app, common, train);
    add_eval_command(app, common, eval);
    add_infer_command(app, common, infer);
    add_generate_command(app, generate);
    const std::vector<CLI::App*> commands = {train.app, eval.app, infer.app};

    // --config is read here (config_file.h), not by CLI11, whose reader lets unknown keys and
    // wrong types through; each subcommand still lists it in its help.
    std::string config_path;
    for (auto* command : commands) {
      command->add_option("--config", config_path,
                          "TOML file of options: a [" + command->get_name() +
                              "] section, keys named like the long "
                              "options; the command line overrides it");
    }
    std::vector<std::string> args(argv + 1, argv + argc);
    insert_config_arguments(args, commands);
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
    if (*train.app) return run_train(common, train);
    if (*eval.app) return run_eval(common, eval);
    if (*generate.app) return run_generate(generate);
    return run_infer(common, infer);
  });
}
