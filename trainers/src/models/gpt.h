// The built-in GPT (private to the model zoo): a decoder-only transformer as GPT-2 and nanoGPT
// build it - token and position embeddings, pre-LayerNorm blocks of causal self-attention
// (scaled_dot_product_attention) and a GELU MLP, a final LayerNorm and an output head tied to the
// token embedding. Built in C++ as a TorchScript module like the other built-ins, so `--out` is a
// file torch.jit.load opens.
//
// forward(idx: int64 [B, T]) -> logits [B, T, vocab]; T <= positions.
#pragma once

#include <torch/script.h>

#include <cstdint>

namespace dpt {

struct GptOptions {
  int64_t vocab_size = 256;
  int64_t positions = 256;  // the longest context (learned position embeddings)
  int64_t layers = 4;
  int64_t dim = 128;        // embedding width; a multiple of heads
  int64_t heads = 4;
};

// nanoGPT's initialisation: N(0, 0.02) weights, zero biases, the residual projections scaled by
// 1/sqrt(2 * layers), LayerNorms at (1, 0).
torch::jit::Module make_gpt(const GptOptions& options);

// Parameters of the model, without the position embedding (the N of FLOPs = 6N + attention).
int64_t gpt_parameters(const GptOptions& options);

}  // namespace dpt
