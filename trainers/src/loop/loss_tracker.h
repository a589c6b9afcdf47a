// The training loss as the Trainer's loop keeps it (private): on the device, without a host
// synchronisation per step.
//
// Reading a loss on the host (.item()) waits for the whole step's GPU work, and a collective per
// step to share it would add a round trip: both stall a GPU pipeline. So each step's local loss
// stays a 0-dim device tensor; the first step whose loss was NaN/Inf is remembered on the device;
// and the ranks reduce (one small collective) only when a value is reported - a log line, an
// epoch's mean, a checkpoint. Every method marked collective must be called by every rank at the
// same point of the loop.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

class LossTracker {
 public:
  // `world` may be null (one process); `device` is where the losses are computed.
  LossTracker(CommunicatorPtr world, torch::Device device);

  // The local mean loss of optimizer step `step` (1-based), a 0-dim tensor on the device.
  // `counted`: the step updated the model and enters the epoch's mean.
  void record(const torch::Tensor& local_loss, int64_t step, bool counted = true);
  // Whether the loss of `local_loss` is finite on every rank (collective; reads the device: the
  // price of --skip-nonfinite-loss, paid once per step).
  bool finite_everywhere(const torch::Tensor& local_loss);
  // Throws NumericalError naming the first step whose loss was NaN or Inf, and on how many ranks,
  // when there was one since the start (collective).
  void check_finite(const std::string& advice);
  // The global mean loss of every step recorded since the last call, as (step, loss), oldest
  // first (collective: one all-reduce of those few values, the one a log line pays anyway). So the
  // metrics file gets each step's loss without a synchronisation per step.
  std::vector<std::pair<int64_t, double>> take_step_losses();
  // Mean of the counted steps' global losses since start_epoch(); NaN when none (collective).
  double epoch_mean();
  void start_epoch();

 private:
  torch::Tensor sum_over_ranks(torch::Tensor local);

  CommunicatorPtr world_;
  torch::Device device_;
  torch::Tensor last_;         // local loss of the last step
  torch::Tensor epoch_sum_;    // sum of counted local losses this epoch
  int64_t epoch_count_ = 0;
  torch::Tensor first_bad_;    // first step with a non-finite local loss, or -1
  // Local losses of the steps not yet taken (take_step_losses), on the device; grown by doubling.
  torch::Tensor unreported_;
  std::vector<int64_t> unreported_steps_;
};

}  // namespace dpt
