#include "generate_command.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <iostream>
#include <limits>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/model.h"

namespace dpt::cli {
namespace {

constexpr int64_t kByteVocabulary = 256;

// The next token after `window` [1, T]: temperature, top-k, then a draw from `generator`.
int64_t next_token(Model& model, const torch::Tensor& window, const GenerateCommand& g, torch::Generator& generator) {
  auto logits = model.forward(window).select(1, -1).squeeze(0).to(torch::kFloat).cpu();  // [V]
  if (g.temperature == 0.0) return logits.argmax().item<int64_t>();
  logits = logits / g.temperature;
  if (g.top_k > 0 && g.top_k < logits.size(0)) {
    const double kth = std::get<0>(logits.topk(g.top_k)).min().item<double>();
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  return torch::multinomial(torch::softmax(logits, 0), 1, /*replacement=*/false, generator).item<int64_t>();
}

}  // namespace

void add_generate_command(CLI::App& app, GenerateCommand& g) {
  g.app = app.add_subcommand("generate", "sample text or token ids from a trained language model (one process)");
  g.app->add_option("--model", g.model, "a trained language model: TorchScript taking [1, T] ids, giving [1, T, V]")
      ->required();
  auto* text = g.app->add_option("--prompt", g.prompt, "text to continue (byte level: a model of 256 ids)");
  auto* ids = g.app->add_option("--prompt-tokens", g.prompt_tokens, "token ids to continue, comma-separated")
                  ->delimiter(',');
  text->excludes(ids);
  g.app->add_option("--max-new-tokens", g.max_new_tokens, "tokens to generate")->capture_default_str();
  g.app->add_option("--temperature", g.temperature, "divides the logits; 0: the most likely token each time")
      ->capture_default_str();
  g.app->add_option("--top-k", g.top_k, "sample among the k most likely tokens only (0: all)");
  g.app->add_option("--seed", g.seed, "seed of the sampling generator")->capture_default_str();
  g.app->add_option("--context", g.context,
                    "the model sees at most the last N tokens (default: a built-in GPT's positions, else 256)");
  g.app->add_option("--device", g.device, "cpu or cuda")->capture_default_str();
}

int run_generate(const GenerateCommand& g) {
  DPT_CHECK(g.max_new_tokens >= 0, InvalidArgumentError, "--max-new-tokens must be >= 0, got ", g.max_new_tokens);
  DPT_CHECK(g.temperature >= 0.0, InvalidArgumentError, "--temperature must be >= 0, got ", g.temperature);
  DPT_CHECK(g.top_k >= 0, InvalidArgumentError, "--top-k must be >= 0, got ", g.top_k);
  DPT_CHECK(g.context >= 0, InvalidArgumentError, "--context must be >= 1, got ", g.context);
  DPT_CHECK(g.device == "cpu" || g.device == "cuda", InvalidArgumentError, "--device must be cpu or cuda, got '",
            g.device, "'");
  DPT_CHECK(fs::is_regular_file(g.model), InvalidArgumentError, "--model ", g.model, ": no such file");
  const bool text = g.prompt_tokens.empty();
  std::vector<int64_t> tokens = g.prompt_tokens;
  if (text) {
    for (unsigned char byte : g.prompt) tokens.push_back(byte);
  }
  DPT_CHECK(!tokens.empty(), InvalidArgumentError, "generate needs a --prompt (text) or --prompt-tokens (ids)");
  const torch::Device device(g.device == "cuda" ? torch::kCUDA : torch::kCPU);
  Model model = Model::load(g.model, device);
  model.eval();
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor(tokens, torch::kInt64).unsqueeze(0).to(device);
  const int64_t vocabulary = model.forward(ids.narrow(1, 0, 1)).size(-1);
  DPT_CHECK(!text || vocabulary == kByteVocabulary, InvalidArgumentError, "--prompt is byte-level text, and ", g.model,
            " has ", vocabulary, " token ids, not 256: pass --prompt-tokens");
  for (int64_t id : tokens) {
    DPT_CHECK(id >= 0 && id < vocabulary, InvalidArgumentError, "--prompt-tokens: id ", id, " is outside [0, ",
              vocabulary, ") of ", g.model);
  }
  int64_t context = g.context;
  if (context == 0) {
    const bool known = model.is_torchscript() && model.torchscript().hasattr("dptrain_context");
    context = known ? model.torchscript().attr("dptrain_context").toInt() : 256;
  }
    torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(g.seed));
  for (int64_t i = 0; i < g.max_new_tokens; ++i) {
    const int64_t length = ids.size(1);
    auto window = ids.narrow(1, std::max<int64_t>(0, length - context), std::min(length, context));
    const int64_t next = next_token(model, window, g, generator);
    ids = torch::cat({ids, torch::full({1, 1}, next, ids.options())}, 1);
  }
  const auto out = ids.squeeze(0).cpu();
  if (text) {
    std::string bytes;
    for (int64_t k = 0; k < out.size(0); ++k) bytes.push_back(static_cast<char>(out[k].item<int64_t>()));
    std::cout << bytes << std::endl;
  } else {
    for (int64_t k = 0; k < out.size(0); ++k) std::cout << (k ? "," : "") << out[k].item<int64_t>();
    std::cout << std::endl;
  }
  return 0;
}

}  // namespace dpt::cli
