// Early stopping, as Lightning's EarlyStopping callback (private to the fit loop): the run ends
// once the monitored metric has not improved for `patience` evaluations in a row. Every rank sees
// the same all-reduced evaluation, so every rank decides the same.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "dptrain/trainers/loop/trainer.h"

namespace dpt {

class EarlyStopping {
 public:
  // `metric`: test_loss, test_accuracy or val_<name>; lower is better when it names a loss.
  EarlyStopping(int64_t patience, std::string metric);

  bool enabled() const { return patience_ > 0; }
  // After an evaluation; true when the run should stop now.
  bool observe(const EvalResult& eval);
  // "test_loss did not improve for 3 evaluations (best 0.2871)".
  std::string reason() const;

 private:
  // The monitored value in `eval`; InvalidArgumentError naming what it reports when absent.
  double value_in(const EvalResult& eval) const;

  int64_t patience_;
  std::string metric_;
  bool lower_is_better_;
  std::optional<double> best_;
  int64_t without_improvement_ = 0;
};

}  // namespace dpt
