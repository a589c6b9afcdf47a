// The Trainer's private parts shared by its .cpp files (trainer.cpp, fit_loop.cpp).
#pragma once

#include <memory>

#include "dptrain/parallel/zero/sharded_optimizer.h"
#include "dptrain/trainers/loop/trainer.h"
#include "loop/gradient_sync.h"
#include "loop/loss_scaler.h"
#include "loop/task.h"

namespace dpt {

struct Trainer::Internals {
  std::unique_ptr<GradientSync> sync;
  std::unique_ptr<torch::optim::Optimizer> optimizer;  // null under --zero 1 (sharded instead)
  std::unique_ptr<ShardedOptimizer> sharded;            // ZeRO-1: this rank's shard of the state
  // The optimizer whose learning rate the schedule sets: the shard's under ZeRO-1.
  torch::optim::Optimizer& active_optimizer() { return sharded ? sharded->shard_optimizer() : *optimizer; }
  LossScaler scaler;
  Task task{"cross_entropy", false, false};
};

}  // namespace dpt
