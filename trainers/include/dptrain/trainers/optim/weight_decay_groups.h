// Which parameters weight decay applies to: the language-model recipe of leaving biases, norm gains
// and embeddings undecayed (GPT-2, minGPT, nanoGPT), as PyTorch users write it with two parameter
// groups:
//
//   auto decays = dpt::weight_decay_mask(model, {"bias", "norm", "embedding"});
//   auto optimizer = dpt::make_optimizer(model.parameters(), options.weight_decay(0.1), decays);
//   // group 0: the decayed parameters (weight decay 0.1), group 1: the others (0)
//
// The words select, for every kind of model:
//   bias       a parameter whose name ends in "bias" ("fc.bias", "attn_qkv_bias");
//   norm       every other 1-D parameter: the gains of LayerNorm, BatchNorm, GroupNorm, RMSNorm
//              (nanoGPT's rule: decay only what multiplies a matrix);
//   embedding  the table of a torch.nn.Embedding (TorchScript: a submodule of that class, or a
//              parameter the code passes to torch.embedding / F.embedding as its weight; C++:
//              a torch::nn::Embedding's weight). A compiled package (.pt2) keeps no module types, so
//              there it is a parameter whose last module's name holds "emb" or is wte or wpe (GPT-2's
//              names): check the log line that lists what was left out.
// Anything else is a glob pattern over the dotted parameter names ("pos_*", "*.scale"); a word or
// pattern that selects no parameter is an InvalidArgumentError (a typo would otherwise decay all).
#pragma once

#include <string>
#include <vector>

#include "dptrain/core/model.h"

namespace dpt {

// One flag per parameter of model.named_parameters(): true where weight decay applies. Empty
// `exclude`: an empty mask (one parameter group).
std::vector<bool> weight_decay_mask(const Model& model, const std::vector<std::string>& exclude);

// "12 tensors (3,456 elements): wte_weight, blocks.0.ln_1_weight, ..." for the log line.
std::string describe_excluded(const Model& model, const std::vector<bool>& decays);

}  // namespace dpt
