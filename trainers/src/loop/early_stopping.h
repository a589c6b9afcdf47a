// Early stopping, as Lightning's EarlyStopping callback (private to the fit loop): the run ends
// once the monitored metric has not improved for `patience` evaluations in a row. Its count is
// kept in checkpoints, so a resumed run stops where the uninterrupted one would have.
#pragma once

#include <cstdint>
#include <string>

#include "loop/metric_monitor.h"

namespace dpt {

class EarlyStopping {
 public:
  EarlyStopping(int64_t patience, std::string metric);

  bool enabled() const { return patience_ > 0; }
  // After the evaluation of `step`; true when the run should stop now.
  bool observe(const EvalResult& eval, int64_t step);
  // "test_loss did not improve for 3 evaluations (best 0.2871 at step 900)".
  std::string reason() const;
  const MetricMonitor& monitor() const { return monitor_; }
  MetricMonitor& monitor() { return monitor_; }

 private:
  int64_t patience_;
  MetricMonitor monitor_;
};

}  // namespace dpt
