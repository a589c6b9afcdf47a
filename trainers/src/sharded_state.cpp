#include "sharded_state.h"

#include "dptrain/core/error.h"
#include "dptrain/trainers/optimizer_state.h"

namespace dpt {
namespace {

// The mirror's per-parameter state objects from the gathered state (keys as ShardedOptimizer's).
void fill_mirror(torch::optim::Optimizer& mirror, const std::vector<torch::Tensor>& parameters,
                 const ShardedOptimizer::State& state) {
  const std::string kind = optimizer_kind(mirror);
  for (size_t i = 0; i < parameters.size(); ++i) {
    const auto& entry = state[i];
    if (entry.empty()) continue;
    auto get = [&](const char* key) { return entry.count(key) ? entry.at(key) : torch::Tensor(); };
    const int64_t step = entry.count("step") ? entry.at("step").item<int64_t>() : 0;
    std::unique_ptr<torch::optim::OptimizerParamState> param_state;
    if (kind == "sgd") {
      auto sgd = std::make_unique<torch::optim::SGDParamState>();
      sgd->momentum_buffer(get("momentum_buffer"));
      param_state = std::move(sgd);
    } else if (kind == "adam") {
      auto adam = std::make_unique<torch::optim::AdamParamState>();
      adam->step(step).exp_avg(get("exp_avg")).exp_avg_sq(get("exp_avg_sq")).max_exp_avg_sq(get("max_exp_avg_sq"));
      param_state = std::move(adam);
    } else {
      auto adamw = std::make_unique<torch::optim::AdamWParamState>();
      adamw->step(step).exp_avg(get("exp_avg")).exp_avg_sq(get("exp_avg_sq")).max_exp_avg_sq(get("max_exp_avg_sq"));
      param_state = std::move(adamw);
    }
    mirror.state()[parameters[i].unsafeGetTensorImpl()] = std::move(param_state);
  }
}

ShardedOptimizer::State read_mirror(torch::optim::Optimizer& mirror, const std::vector<torch::Tensor>& parameters) {
  ShardedOptimizer::State state(parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    auto found = mirror.state().find(parameters[i].unsafeGetTensorImpl());
    if (found == mirror.state().end()) continue;
    auto put = [&](const char* key, const torch::Tensor& t) {
      if (t.defined()) state[i].emplace(key, t);
    };
    const auto* param_state = found->second.get();
    if (auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(param_state)) {
      put("momentum_buffer", sgd->momentum_buffer());
    } else if (auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(param_state)) {
      put("exp_avg", adam->exp_avg());
      put("exp_avg_sq", adam->exp_avg_sq());
      put("max_exp_avg_sq", adam->max_exp_avg_sq());
      state[i].emplace("step", torch::tensor(adam->step(), torch::kInt64));
    } else if (auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(param_state)) {
      put("exp_avg", adamw->exp_avg());
      put("exp_avg_sq", adamw->exp_avg_sq());
      put("max_exp_avg_sq", adamw->max_exp_avg_sq());
      state[i].emplace("step", torch::tensor(adamw->step(), torch::kInt64));
    }
  }
  return state;
}

}  // namespace

c10::IValue sharded_optimizer_state_dict(ShardedOptimizer& sharded, const std::vector<torch::Tensor>& parameters,
                                         const OptimizerOptions& options) {
  auto mirror = make_optimizer(parameters, options);
  // The learning rate of this step (the schedule sets it on the shard's optimizer).
  set_learning_rate(*mirror, sharded.shard_optimizer().param_groups().front().options().get_lr());
  fill_mirror(*mirror, parameters, sharded.full_state());
  return optimizer_state_dict(*mirror);
}

void load_sharded_optimizer_state(ShardedOptimizer& sharded, const std::vector<torch::Tensor>& parameters,
                                  const OptimizerOptions& options, const Checkpoint& checkpoint,
                                  const std::string& origin) {
  auto mirror = make_optimizer(parameters, options);
  load_optimizer_state(*mirror, checkpoint, origin);  // the same checks as an unsharded run's
  sharded.load_full_state(read_mirror(*mirror, parameters));
}

}  // namespace dpt
