// `--config FILE.toml`: options of one subcommand read from a TOML file (toml++), as command-line
// arguments placed before the command line's own, so the command line wins.
//
//   [train]              # the section of `dptrain train`; [eval] and [infer] likewise
//   model = "mlp"        # keys are the long options without the dashes
//   lr = 0.05            # numbers for numeric options, strings for the others
//   no-eval = true       # flags take true or false
//   mean = [0.5, 0.5]    # options of several values take arrays
//
// Everything else is one InvalidArgumentError naming the file, the line and the key: a syntax
// error or duplicate key (toml++'s message), an unknown key or section, a value of the wrong type
// (`lr = [1, 2]`), a binary or over-large file.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace dpt::cli {

// The arguments that the file's [`section`] stands for, checked against `command`'s options.
std::vector<std::string> config_arguments(const std::string& path, const std::string& section,
                                          const CLI::App& command);

// Replaces `--config FILE` (or --config=FILE) in `args` by the file's options for the subcommand
// named in `args`, placed right after the subcommand's name so that the command line overrides it.
void insert_config_arguments(std::vector<std::string>& args, const std::vector<CLI::App*>& commands);

}  // namespace dpt::cli
