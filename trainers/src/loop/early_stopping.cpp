#include "loop/early_stopping.h"

#include <cmath>

#include "dptrain/core/error.h"

namespace dpt {

EarlyStopping::EarlyStopping(int64_t patience, std::string metric)
    : patience_(patience), monitor_(std::move(metric), "--early-stopping-metric") {}

bool EarlyStopping::observe(const EvalResult& eval, int64_t step) {
  if (!enabled()) return false;
  monitor_.observe(eval, step);
  return monitor_.evaluations_without_improvement() >= patience_;
}

std::string EarlyStopping::reason() const {
  return detail::concat(monitor_.metric(), " did not improve for ", monitor_.evaluations_without_improvement(),
                        " evaluation(s) (best ", monitor_.best() ? *monitor_.best() : NAN, " at step ",
                        monitor_.best_step(), ")");
}

}  // namespace dpt
