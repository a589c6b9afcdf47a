#include "checkpoint/zero_optimizer_checkpoint.h"

#include "dptrain/trainers/optim/optimizer_state_dict.h"

namespace dpt {

c10::IValue zero_optimizer_state_dict(const ShardedOptimizer::State& gathered, double lr,
                                         const std::vector<torch::Tensor>& parameters,
                                         const OptimizerOptions& options) {
  auto mirror = make_optimizer(parameters, options);
  set_learning_rate(*mirror, lr);
  for (size_t i = 0; i < parameters.size(); ++i) {
    if (gathered[i].empty()) continue;  // before the first step
    mirror->state()[parameters[i].unsafeGetTensorImpl()] = make_param_state(*mirror, gathered[i]);
  }
  return optimizer_state_dict(*mirror);
}

void load_zero_optimizer_state(ShardedOptimizer& sharded, const std::vector<torch::Tensor>& parameters,
                                  const OptimizerOptions& options, const Checkpoint& checkpoint,
                                  const std::string& origin) {
  auto mirror = make_optimizer(parameters, options);
  load_optimizer_state(*mirror, checkpoint, origin);  // the same checks as an unsharded run's
  ShardedOptimizer::State state(parameters.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    auto found = mirror->state().find(parameters[i].unsafeGetTensorImpl());
    if (found != mirror->state().end()) state[i] = param_state_tensors(*found->second);
  }
  sharded.load_full_state(state);
}

}  // namespace dpt
