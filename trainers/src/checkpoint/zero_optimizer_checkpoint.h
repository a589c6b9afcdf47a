// A ShardedOptimizer's state (ZeRO-1, `--zero 1`) in checkpoints: the same torch.optim layout as an
// unsharded run's, so a checkpoint does not depend on the world size, loads in PyTorch, and resumes
// at any world size with or without --zero (private to the Trainer).
//
// Both ways go through a "mirror": an unsharded optimizer of the same kind over the full parameters,
// holding the gathered state only while a checkpoint is written or read.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "dptrain/trainers/checkpoint/checkpoint.h"
#include "dptrain/parallel/zero/sharded_optimizer.h"
#include "dptrain/trainers/optim/optim.h"

namespace dpt {

// The state_dict of the state `ShardedOptimizer::full_state()` gathered (a collective every rank
// takes part in; only the writer needs this conversion), at learning rate `lr`.
c10::IValue zero_optimizer_state_dict(const ShardedOptimizer::State& gathered, double lr,
                                         const std::vector<torch::Tensor>& parameters,
                                         const OptimizerOptions& options);

// Each rank keeps its shard of the checkpoint's optimizer state (no communication).
void load_zero_optimizer_state(ShardedOptimizer& sharded, const std::vector<torch::Tensor>& parameters,
                                  const OptimizerOptions& options, const Checkpoint& checkpoint,
                                  const std::string& origin);

}  // namespace dpt
