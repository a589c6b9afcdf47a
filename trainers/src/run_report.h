// What a training run tells the user (private to the Trainer): log lines, the JSON-lines metrics
// file (rank 0), and the plot drawn from it at the end.
#pragma once

#include <chrono>
#include <fstream>
#include <string>

#include "dptrain/trainers/trainer.h"
#include "run_state.h"

namespace dpt {

class RunReport {
 public:
  // `append`: a resumed run continues the metrics file.
  RunReport(const TrainerOptions& options, int rank, bool append);

  double elapsed_s() const;
  // A logged step (info.loss is the global loss, NaN when the step was skipped).
  void step(const StepInfo& info, const Position& position, int64_t epoch_steps);
  void epoch(const EpochInfo& info);
  // The evaluation after a run that did not end with an evaluated epoch.
  void final_evaluation(const Position& position, const EvalResult& eval);
  // Draws the plot from the metrics file (rank 0, when both are configured).
  void finish();

 private:
  void write(const std::string& json_line);

  const TrainerOptions& options_;
  int rank_;
  std::chrono::steady_clock::time_point start_;
  std::ofstream metrics_;
};

}  // namespace dpt
