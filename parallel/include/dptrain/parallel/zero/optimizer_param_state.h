// One parameter's optimizer state as named tensors, and back: the one place that knows libtorch's
// per-optimizer state types. Keys: "momentum_buffer" (SGD); "exp_avg", "exp_avg_sq",
// "max_exp_avg_sq" (amsgrad) and "step" (a 0-dim int64 tensor) for Adam and AdamW. Any other
// optimizer kind is an UnsupportedError. Used to gather and re-shard a ShardedOptimizer's state
// and to write checkpoints in torch.optim's layout.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

namespace dpt {

using ParamStateTensors = std::map<std::string, torch::Tensor>;
ParamStateTensors param_state_tensors(const torch::optim::OptimizerParamState& state);
// A state object of `optimizer`'s kind holding `tensors` (missing keys: undefined, step 0).
std::unique_ptr<torch::optim::OptimizerParamState> make_param_state(const torch::optim::Optimizer& optimizer,
                                                                    const ParamStateTensors& tensors);
// Bytes of the state tensors (not "step") `optimizer` holds; states of other kinds count 0.
int64_t optimizer_state_bytes(const torch::optim::Optimizer& optimizer);

}  // namespace dpt
