// Optimizers and learning-rate schedules of the Trainer.
//
//   auto optimizer = dpt::make_optimizer(model.parameters(),
//                                        dpt::OptimizerOptions().name("sgd").lr(0.1).momentum(0.9));
//   dpt::LrSchedule schedule(dpt::LrScheduleOptions().kind("cosine").warmup_steps(100), 0.1, total_steps);
//   for (int64_t step = 0; ...; ++step) { dpt::set_learning_rate(*optimizer, schedule.lr_at(step)); ... }
//
// A schedule is a pure function of the global step (like PyTorch's LambdaLR with a closed form), so
// its whole state is the step counter the checkpoint already holds: resuming needs nothing else.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dpt {

struct OptimizerOptions {
  TORCH_ARG(std::string, name) = "sgd";  // sgd | adam | adamw
  TORCH_ARG(double, lr) = 0.01;
  TORCH_ARG(double, momentum) = 0.0;      // sgd only
  TORCH_ARG(double, weight_decay) = 0.0;  // sgd/adam: L2 in the gradient; adamw: decoupled
  TORCH_ARG(double, beta1) = 0.9;         // adam, adamw
  TORCH_ARG(double, beta2) = 0.999;
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(bool, nesterov) = false;
  // Parameters weight decay leaves alone (the language-model recipe): "bias", "norm", "embedding"
  // or glob patterns of parameter names (weight_decay_groups.h says what each word selects).
  TORCH_ARG(std::vector<std::string>, weight_decay_exclude) = {};
};

// Validates the options (InvalidArgumentError naming the parameter) and builds the optimizer: one
// parameter group, or with `decays` (one flag per parameter, from weight_decay_mask) two, as PyTorch
// users write them: group 0 the decayed parameters with weight_decay, group 1 the others with 0 (a
// group may be empty, so the layout does not depend on the model).
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& parameters,
                                                        const OptimizerOptions& options,
                                                        const std::vector<bool>& decays = {});
void validate(const OptimizerOptions& options);
const std::vector<std::string>& optimizer_names();

// Sets lr on every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

struct LrScheduleOptions {
  // constant | step | cosine. step: lr * gamma^(floor(step / step_size)).
  // cosine: from lr down to min_lr over the steps after warmup.
  TORCH_ARG(std::string, kind) = "constant";
  TORCH_ARG(int64_t, step_size) = 1000;  // in optimizer steps
  TORCH_ARG(double, gamma) = 0.1;
  TORCH_ARG(double, min_lr) = 0.0;
  // Linear warmup from lr * warmup_start_factor to lr over the first warmup_steps (any kind).
  TORCH_ARG(int64_t, warmup_steps) = 0;
  TORCH_ARG(double, warmup_start_factor) = 0.1;
};

void validate(const LrScheduleOptions& options);
const std::vector<std::string>& lr_schedule_names();

class LrSchedule {
 public:
  // total_steps: the planned number of optimizer steps (the cosine's length).
  LrSchedule(LrScheduleOptions options, double base_lr, int64_t total_steps);
  // The learning rate of optimizer step `step` (0-based).
  double lr_at(int64_t step) const;
  const LrScheduleOptions& options() const { return options_; }
  // Everything the schedule is ({"kind", "base_lr", "total_steps", "step_size", "gamma", "min_lr",
  // "warmup_steps", "warmup_start_factor"}), written into checkpoints for their readers: with
  // lr_at's formula (docs/trainer.md) a PyTorch script continues it as a LambdaLR.
  c10::IValue state_dict() const;

 private:
  LrScheduleOptions options_;
  double base_lr_;
  int64_t total_steps_;
};

}  // namespace dpt
