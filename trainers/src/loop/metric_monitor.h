// One validation metric watched across a run's evaluations (private to the fit loop): the best
// value so far, at which step, and how many evaluations since it improved. Early stopping and
// --keep-best each watch one, as Lightning's EarlyStopping and ModelCheckpoint(monitor=...) do.
// Every rank sees the same all-reduced evaluation, so every rank's monitor agrees.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "dptrain/trainers/checkpoint/checkpoint.h"
#include "dptrain/trainers/loop/trainer.h"

namespace dpt {

class MetricMonitor {
 public:
  // `metric`: test_loss, test_accuracy, test_top<k>_accuracy or val_<name>; lower is better when
  // the name has "loss" in it. `option` names the setting in errors ("--keep-best").
  MetricMonitor(std::string metric, std::string option);
  // InvalidArgumentError naming `option` when `metric` is none of the names above.
  static void check_name(const std::string& metric, const std::string& option);

  const std::string& metric() const { return metric_; }
  // Takes the evaluation of `step`; true when it improves on the best so far (the first does).
  // InvalidArgumentError naming the option and what the evaluation reports when it lacks the metric.
  bool observe(const EvalResult& eval, int64_t step);
  std::optional<double> best() const { return best_; }
  int64_t best_step() const { return best_step_; }
  int64_t evaluations_without_improvement() const { return without_improvement_; }

  // What a checkpoint keeps of it, and taking that back on --resume (a state of another metric is
  // ignored: the run watches a different one now).
  MonitorState state() const;
  void restore(const MonitorState& state);

 private:
  double value_in(const EvalResult& eval) const;

  std::string metric_;
  std::string option_;
  bool lower_is_better_;
  std::optional<double> best_;
  int64_t best_step_ = 0;
  int64_t without_improvement_ = 0;
};

}  // namespace dpt
