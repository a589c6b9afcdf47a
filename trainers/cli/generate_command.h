// `dptrain generate`: text (or token ids) sampled from a trained language model, no Python needed.
//
//   dptrain generate --model gpt.pt --prompt "This License" --max-new-tokens 200 --temperature 0.8 --top-k 40
//   dptrain generate --model gpt.pt --prompt-tokens 84,104,105 --max-new-tokens 20     # ids in, ids out
//
// One process (no launcher needed): the model's last-position logits, divided by the temperature
// (0: always the most likely token), cut to the top k, sampled from a generator seeded by --seed,
// appended, and the window slid to the last --context tokens (a built-in GPT's own positions by
// default). A text prompt is byte level (the
// tokenizer of scripts/data/tokenize_text.py), so it needs a model of 256 ids.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace dpt::cli {

struct GenerateCommand {
  CLI::App* app = nullptr;
  std::string model;
  std::string prompt;
  std::vector<int64_t> prompt_tokens;
  int64_t max_new_tokens = 100;
  double temperature = 1.0;
  int64_t top_k = 0;
  int64_t seed = 0;
  int64_t context = 0;  // 0: the model's own (a built-in GPT's dptrain_context), else 256
  std::string device = "cpu";
};

void add_generate_command(CLI::App& app, GenerateCommand& generate);
int run_generate(const GenerateCommand& generate);

}  // namespace dpt::cli
