// The progress bar of a training run on an interactive terminal (rank 0; private to the Trainer):
//
//   epoch 2/5 [===========>                ]  143/300  1523.0 samples/s  ETA 0:42  loss 0.4123
//
// The line of dpt::format_progress (dptrain/core/data/progress.h, the one progress renderer) with
// the run's own clock: the ETA covers the rest of the run, a resumed run times from its first step.
// Drawn as the log's status line (dptrain/core/logging.h), so log lines still print above it, and
// redrawn at most 5 times a second. Nothing at all where stderr is not a terminal: logs stay plain
// lines in files and job outputs. The loss is this rank's last step loss, read at a redraw (one
// device sync a few times a second, never a collective).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace dpt {

class ProgressBar {
 public:
  // `enabled`: asked for (--no-progress turns it off), on rank 0; it then shows only on a terminal.
  ProgressBar(bool enabled, int64_t epochs, int64_t global_batch, int64_t planned_steps);
  ~ProgressBar();

  // After optimizer step `step` (1-based, of the whole run), `batch_in_epoch` of `epoch_steps`
  // done in 0-based `epoch`; `loss` this rank's step loss (a 0-dim tensor, read only when drawn).
  void step(int64_t epoch, int64_t batch_in_epoch, int64_t epoch_steps, int64_t step, const torch::Tensor& loss);
  void clear();

 private:
  bool active_;
  int64_t epochs_;
  int64_t global_batch_;
  int64_t planned_steps_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  int64_t first_step_ = -1;  // the first step this run took (a resumed run starts later)
};

// The same bar while the model is evaluated, so a long evaluation does not look like a hang:
//   evaluating [=========>                  ]  12/40  3120.0 samples/s  ETA 0:03
// (rank 0 on a terminal; cleared when done: the training bar comes back at the next step).
class EvaluationBar {
 public:
  EvaluationBar(bool enabled, int64_t batches);
  ~EvaluationBar();
  EvaluationBar(const EvaluationBar&) = delete;
  EvaluationBar& operator=(const EvaluationBar&) = delete;
  // `done` batches of this rank evaluated, `samples` samples in them.
  void step(int64_t done, int64_t samples);

 private:
  bool active_;
  int64_t batches_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace dpt
