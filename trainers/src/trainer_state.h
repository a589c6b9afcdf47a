// The Trainer's private parts shared by its .cpp files (trainer.cpp, fit_loop.cpp).
#pragma once

#include <memory>

#include "dptrain/trainers/trainer.h"
#include "gradient_sync.h"
#include "loss_scaler.h"
#include "task.h"

namespace dpt {

struct Trainer::State {
  std::unique_ptr<GradientSync> sync;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  LossScaler scaler;
  Task task{"cross_entropy", false, false};
};

}  // namespace dpt
