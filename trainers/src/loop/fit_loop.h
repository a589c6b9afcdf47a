// One run of Trainer::fit (private): the epoch loop over a TrainSource, and the decisions taken
// between steps - what to report, when to checkpoint, when to stop.
//
//   FitLoop loop(trainer, train, test);   // plans the steps, restores a checkpoint if asked
//   TrainResult result = loop.run();
//
// The other concerns live elsewhere: the samples in train_source.h, one optimizer step in
// Trainer::train_step, the learning rate in optim.h (LrSchedule), the position and checkpoint
// contents in checkpoint/run_checkpoint.h, the loss bookkeeping in loss_tracker.h, logs and metrics in
// report/run_report.h.
#pragma once

#include <map>
#include <memory>
#include <optional>

#include "dptrain/core/directory_lock.h"
#include "dptrain/trainers/checkpoint/checkpoint.h"
#include "dptrain/trainers/optim/optim.h"
#include "dptrain/trainers/data/train_source.h"
#include "dptrain/trainers/loop/trainer.h"
#include "loop/early_stopping.h"
#include "loop/metric_monitor.h"
#include "loop/loss_tracker.h"
#include "report/run_report.h"
#include "checkpoint/run_checkpoint.h"
#include "loop/stop_agreement.h"
#include "loop/straggler_monitor.h"

namespace dpt {

class FitLoop {
 public:
  // `tokens_per_sample` > 0: samples are windows of that many tokens (reported as tokens/s too).
  FitLoop(Trainer& trainer, const TrainSource& train, const Dataset* test, int64_t tokens_per_sample = 0);
  TrainResult run();

 private:
  enum class EpochEnd { Completed, CompletedAndStop, StoppedInside };
  // The rest of position_.epoch, and its end (evaluation, checkpoint) when it completes.
  EpochEnd run_epoch();
  // After optimizer step `info`: report, checkpoint, decide whether to stop. True to stop.
  bool after_step(StepInfo& info, int64_t epoch_steps);
  void end_epoch(double epoch_start);
  // Each rank's busy time over the interval that ended at a log step (or at the end: `last`).
  void report_rank_spread(bool last);  // epoch_start: report_.elapsed_s() when the epoch began
  // Evaluates the model on the test split now (--eval-every, an epoch's end): reported, kept as
  // the latest evaluation, and watched by early stopping and --keep-best. `what` names it in the log.
  EvalResult evaluate(const std::string& what);
  void check_finite();
  // A checkpoint pointing at position_ (rank 0 writes; every rank takes part), written to the
  // numbered file, or to best.pt alone; best.pt also when an evaluation since the last one improved.
  void save_checkpoint(bool numbered = true);
  // The watched metrics' states, as checkpoints keep them.
  std::map<std::string, MonitorState> monitor_states() const;

  // The --checkpoint-dir, created and locked by rank 0 (every rank gets its verdict); null without.
  std::unique_ptr<CheckpointDirectory> open_checkpoints();
  // Restores options_.resume() when set (a fresh Position otherwise), checked against the plan.
  Position restored_position();
  // Early stopping's and --keep-best's states from the resumed checkpoint (none for a fresh run).
  void restore_monitors();

  Trainer& trainer_;
  const TrainerOptions& options_;
  const TrainSource& train_;
  const Dataset* test_;
  RankLayout layout_;
  std::unique_ptr<DirectoryLock> checkpoint_lock_;  // rank 0's, while this run may write checkpoints
  std::unique_ptr<CheckpointDirectory> checkpoints_;
  RunParts run_;  // points at schedule_, built after the restored position is known
  std::map<std::string, MonitorState> restored_monitors_;  // set by restored_position()
  Position position_;
  int64_t planned_steps_ = 0;
  LrSchedule schedule_;
  RunReport report_;
  LossTracker losses_;
  TrainResult result_;
  int64_t steps_this_run_ = 0;
  StopAgreement stop_requests_;
  std::unique_ptr<StragglerMonitor> stragglers_;  // with more than one rank
  EarlyStopping early_stopping_;
  bool stop_early_ = false;          // early stopping asked to end the run
  std::optional<MetricMonitor> keep_best_;  // --keep-best
  bool best_pending_ = false;        // an evaluation improved it since best.pt was written
  int64_t last_evaluated_step_ = -1;
};

}  // namespace dpt
