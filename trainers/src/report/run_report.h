// What a training run tells the user (private to the Trainer): log lines, the JSON-lines metrics
// file, TensorBoard event files and the progress bar (all but the log lines on rank 0 only).
#pragma once

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dptrain/trainers/report/tensorboard.h"
#include "dptrain/trainers/loop/trainer.h"
#include "loop/straggler_monitor.h"
#include "report/progress_bar.h"
#include "checkpoint/run_checkpoint.h"

namespace dpt {

class RunReport {
 public:
  // `append`: a resumed run continues the metrics file. `global_batch`: samples per optimizer
  // step over all ranks; `planned_steps`: the run's last step (for the progress bar's ETA).
  // `tokens_per_sample` > 0 (windows of token ids): tokens/s beside samples/s, and the MFU when
  // the options give the FLOPs per token and the peak (`world` ranks share the tokens).
  RunReport(const TrainerOptions& options, int rank, bool append, int64_t global_batch, int64_t planned_steps,
            int64_t tokens_per_sample = 0, int world = 1);

  double elapsed_s() const;
  // After every optimizer step (cheap: no device sync but the progress bar's few per second).
  void after_step(const StepInfo& info, const Position& position, int64_t epoch_steps);
  // A logged step (info.loss is the global loss, NaN when the step was skipped): log line,
  // metrics, TensorBoard, with samples/s, step time and exposed communication since the last one.
  void step(const StepInfo& info, const Position& position, int64_t epoch_steps);
  // The global losses of steps that were not logged, (step, loss) in order, all in epoch `epoch`
  // (0-based): one metrics record {"type": "loss", "epoch", "step", "loss"} each, and TensorBoard's
  // train/loss, so curves have every step (logged steps have their "step" record).
  void step_losses(const std::vector<std::pair<int64_t, double>>& losses, int64_t epoch);
  // Each rank's busy time per step over a log interval (loop/straggler_monitor.h): an INFO line,
  // a WARN line when a rank has just become a straggler, a metrics record of type "ranks",
  // TensorBoard's perf/rank_busy_* scalars. Rank 0 only, as the spread is the same everywhere.
  void rank_spread(const RankSpread& spread);
  void epoch(const EpochInfo& info);
  // The evaluation after a run that did not end with an evaluated epoch.
  void final_evaluation(const Position& position, const EvalResult& eval);
  // An evaluation inside an epoch (--eval-every): a log line, a metrics record of type "eval",
  // TensorBoard's test/* scalars at this step.
  void evaluation(const Position& position, const EvalResult& eval, const std::string& what);
  void finish();

 private:
  void record_evaluation(const Position& position, const EvalResult& eval, const std::string& type,
                         const std::string& what);
  // One or more JSON lines (newline-separated), flushed once.
  void write(const std::string& json_lines);

  const TrainerOptions& options_;
  int rank_;
  int64_t global_batch_;
  int64_t tokens_per_sample_;
  int world_;
  std::chrono::steady_clock::time_point start_;
  std::ofstream metrics_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  ProgressBar progress_;
  // Since the last logged step: when it was, which step, the exposed communication summed.
  double last_log_s_ = 0;
  int64_t last_log_step_ = -1;
  double exposed_comm_s_ = 0;
  int64_t exposed_comm_steps_ = 0;
};

}  // namespace dpt
