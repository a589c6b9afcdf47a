// An optimizer's state in PyTorch's own `state_dict` layout, both ways, so that a checkpoint written
// by dptrain continues in PyTorch and one written by PyTorch continues in dptrain:
//
//   ckpt = torch.load("checkpoint-0000000120.pt")
//   optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
//   optimizer.load_state_dict(ckpt["optimizer"])
//
// The layout (torch.optim.Optimizer.state_dict()):
//   {"state": {index: {name: tensor}}, "param_groups": [{hyperparameters..., "params": [index...]}]}
// where parameters are numbered 0, 1, ... in the order of the groups. Per optimizer:
//   SGD    state "momentum_buffer" (when momentum > 0); group lr, momentum, dampening,
//          weight_decay, nesterov (+ PyTorch's maximize, foreach, differentiable, fused)
//   Adam   state "step" (a float32 0-dim tensor, as PyTorch keeps it), "exp_avg", "exp_avg_sq",
//   AdamW  "max_exp_avg_sq" (amsgrad); group lr, betas, eps, weight_decay, amsgrad,
//          decoupled_weight_decay (False: Adam, True: AdamW) (+ maximize, foreach, capturable,
//          differentiable, fused)
// dptrain's optimizers are libtorch's torch::optim::SGD (dpt::ForeachSGD), Adam and AdamW.
#pragma once

#include <torch/torch.h>

#include <string>

namespace dpt {

// The optimizer's state_dict (tensors on the CPU).
c10::IValue optimizer_state_dict(torch::optim::Optimizer& optimizer);

// Loads a state_dict in PyTorch's layout: hyperparameters and per-parameter state, the state
// tensors placed on their parameter's device and dtype. Checks that it belongs to the same kind
// of optimizer and to parameters of the same number and shapes: DataError naming `origin` and what
// differs (an Adam state for an SGD run, group 0's parameter 3 of shape [10] for one of [10, 4]).
void load_optimizer_state_dict(torch::optim::Optimizer& optimizer, const c10::IValue& state_dict,
                               const std::string& origin);

// "sgd", "adam" or "adamw": the kind as --optimizer names it (InvalidArgumentError otherwise).
std::string optimizer_kind(const torch::optim::Optimizer& optimizer);

}  // namespace dpt
