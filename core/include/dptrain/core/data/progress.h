// Progress of an epoch for humans: a live bar on a terminal, periodic log lines otherwise.
//
//   dpt::ProgressReporter progress(loader.steps_per_epoch(), dpt::ProgressOptions().rank(rank).label("epoch 3"));
//   for (auto& batch : loader.epoch(3)) {
//     ...
//     progress.update(batch.size() * world_size, fmt::format("loss {:.4f}", loss));
//   }
//   progress.finish();
//
// Only rank 0 reports (other ranks' reporters are silent). In Auto mode the bar is drawn on
// `stream` (stderr by default) when it is a terminal (isatty), redrawn at most 10 times a second;
// on stderr it is the log's status line (dptrain/core/logging.h), so log lines print above it;
// when it is not (a log file, CI, mpirun's pipes) a plain DPT_LOG_INFO line is written every
// `log_interval_s` seconds and at finish(). Lines show samples/s and the ETA.
#pragma once

#include <torch/arg.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace dpt {

enum class ProgressMode { Auto, Bar, Log, Off };

struct ProgressOptions {
  using Stream = std::FILE*;
  TORCH_ARG(int, rank) = 0;
  TORCH_ARG(std::string, label) = "train";
  TORCH_ARG(ProgressMode, mode) = ProgressMode::Auto;
  TORCH_ARG(double, log_interval_s) = 10.0;
  TORCH_ARG(Stream, stream) = stderr;  // where the bar goes
};

// "epoch 3 [=======>     ]  45/120  3512.4 samples/s  ETA 0:21  loss 0.4310" (bar_width 0: no bar).
std::string format_progress(const std::string& label, int64_t step, int64_t total_steps, double samples_per_s,
                            double eta_s, const std::string& postfix, int bar_width);

class ProgressReporter {
 public:
  ProgressReporter(int64_t total_steps, ProgressOptions options = ProgressOptions());
  ~ProgressReporter();  // a bar still open ends its line
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // One step done, covering `samples` samples (all ranks together, for a job-wide rate).
  void update(int64_t samples, const std::string& postfix = "");
  // Final line (bar completed, or a last log line) with the totals.
  void finish(const std::string& postfix = "");

  ProgressMode mode() const { return mode_; }  // Auto resolved
  double samples_per_second() const;
  int64_t steps() const { return steps_; }

 private:
  using Clock = std::chrono::steady_clock;
  double elapsed_s() const;
  std::string line(const std::string& postfix, int bar_width) const;
  void draw_bar(const std::string& text, bool final);

  int64_t total_steps_;
  ProgressOptions options_;
  ProgressMode mode_;
  Clock::time_point start_;
  Clock::time_point last_output_;
  int64_t steps_ = 0;
  int64_t samples_ = 0;
  bool finished_ = false;
};

}  // namespace dpt
