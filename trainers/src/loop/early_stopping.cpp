#include "loop/early_stopping.h"

#include <cmath>

#include "dptrain/core/error.h"

namespace dpt {

EarlyStopping::EarlyStopping(int64_t patience, std::string metric)
    : patience_(patience), metric_(std::move(metric)), lower_is_better_(metric_.find("loss") != std::string::npos) {}

double EarlyStopping::value_in(const EvalResult& eval) const {
  if (metric_ == "test_loss" && !std::isnan(eval.loss)) return eval.loss;
  if (metric_ == "test_accuracy" && eval.accuracy) return *eval.accuracy;
  if (metric_.rfind("val_", 0) == 0) {
    if (auto it = eval.metrics.find(metric_.substr(4)); it != eval.metrics.end()) return it->second;
  }
  std::string reported;
  auto add = [&reported](const std::string& name) { reported += (reported.empty() ? "" : ", ") + name; };
  if (!std::isnan(eval.loss)) add("test_loss");
  if (eval.accuracy) add("test_accuracy");
  for (const auto& entry : eval.metrics) add("val_" + entry.first);
  DPT_THROW(InvalidArgumentError, "--early-stopping-metric ", metric_, ": the evaluation does not report it (it reports ",
            reported.empty() ? std::string("nothing") : reported, ")");
}

bool EarlyStopping::observe(const EvalResult& eval) {
  if (!enabled()) return false;
  const double value = value_in(eval);
  const bool improved = !best_ || (lower_is_better_ ? value < *best_ : value > *best_);
  if (improved) {
    best_ = value;
    without_improvement_ = 0;
    return false;
  }
  return ++without_improvement_ >= patience_;
}

std::string EarlyStopping::reason() const {
  return detail::concat(metric_, " did not improve for ", without_improvement_, " evaluation(s) (best ",
                        best_ ? *best_ : NAN, ")");
}

}  // namespace dpt
