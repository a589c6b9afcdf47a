#include "dptrain/parallel/zero/optimizer_param_state.h"

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// The tensors of `state` when it is of a kind this file knows; false otherwise.
bool known_state_tensors(const torch::optim::OptimizerParamState& state, ParamStateTensors& out) {
  auto put = [&](const char* key, const torch::Tensor& t) {
    if (t.defined()) out.emplace(key, t);
  };
  if (auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(&state)) {
    put("exp_avg", adam->exp_avg());
    put("exp_avg_sq", adam->exp_avg_sq());
    put("max_exp_avg_sq", adam->max_exp_avg_sq());
    out.emplace("step", torch::tensor(adam->step(), torch::kInt64));
  } else if (auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(&state)) {
    put("exp_avg", adamw->exp_avg());
    put("exp_avg_sq", adamw->exp_avg_sq());
    put("max_exp_avg_sq", adamw->max_exp_avg_sq());
    out.emplace("step", torch::tensor(adamw->step(), torch::kInt64));
  } else if (auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(&state)) {
    put("momentum_buffer", sgd->momentum_buffer());
  } else {
    return false;
  }
  return true;
}

}  // namespace

ParamStateTensors param_state_tensors(const torch::optim::OptimizerParamState& state) {
  ParamStateTensors out;
  DPT_CHECK(known_state_tensors(state, out), UnsupportedError,
            "the state of this optimizer kind cannot be converted (SGD, Adam and AdamW can)");
  return out;
}

std::unique_ptr<torch::optim::OptimizerParamState> make_param_state(const torch::optim::Optimizer& optimizer,
                                                                    const ParamStateTensors& tensors) {
  auto get = [&](const char* key) { return tensors.count(key) ? tensors.at(key) : torch::Tensor(); };
  const int64_t step = tensors.count("step") ? tensors.at("step").item<int64_t>() : 0;
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) {
    auto adam = std::make_unique<torch::optim::AdamParamState>();
    adam->step(step).exp_avg(get("exp_avg")).exp_avg_sq(get("exp_avg_sq")).max_exp_avg_sq(get("max_exp_avg_sq"));
    return adam;
  }
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) {
    auto adamw = std::make_unique<torch::optim::AdamWParamState>();
    adamw->step(step).exp_avg(get("exp_avg")).exp_avg_sq(get("exp_avg_sq")).max_exp_avg_sq(get("max_exp_avg_sq"));
    return adamw;
  }
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) {
    auto sgd = std::make_unique<torch::optim::SGDParamState>();
    sgd->momentum_buffer(get("momentum_buffer"));
    return sgd;
  }
  DPT_THROW(UnsupportedError, "cannot load state into this optimizer kind (SGD, Adam and AdamW can)");
}

int64_t optimizer_state_bytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& [key, state] : optimizer.state()) {
    ParamStateTensors tensors;
    if (!known_state_tensors(*state, tensors)) continue;
    for (const auto& [name, t] : tensors) {
      if (name != "step") bytes += t.numel() * t.element_size();
    }
  }
  return bytes;
}

}  // namespace dpt
