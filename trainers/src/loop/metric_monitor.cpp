#include "loop/metric_monitor.h"

#include <cmath>
#include <regex>

#include "dptrain/core/error.h"

namespace dpt {

MetricMonitor::MetricMonitor(std::string metric, std::string option)
    : metric_(std::move(metric)),
      option_(std::move(option)),
      lower_is_better_(metric_.find("loss") != std::string::npos) {}

void MetricMonitor::check_name(const std::string& metric, const std::string& option) {
  static const std::regex known("test_loss|test_accuracy|test_top[0-9]+_accuracy|val_.+");
  DPT_CHECK(std::regex_match(metric, known), InvalidArgumentError, option, " ", metric,
            " is not test_loss, test_accuracy, test_top<k>_accuracy (with --top-k k) or val_<name> (a metric of "
            "validation_step)");
}

double MetricMonitor::value_in(const EvalResult& eval) const {
  const std::string top_k = "test_top" + std::to_string(eval.top_k) + "_accuracy";
  if (metric_ == "test_loss" && !std::isnan(eval.loss)) return eval.loss;
  if (metric_ == "test_accuracy" && eval.accuracy) return *eval.accuracy;
  if (metric_ == top_k && eval.top_k_accuracy) return *eval.top_k_accuracy;
  if (metric_.rfind("val_", 0) == 0) {
    if (auto it = eval.metrics.find(metric_.substr(4)); it != eval.metrics.end()) return it->second;
  }
  std::string reported;
  auto add = [&reported](const std::string& name) { reported += (reported.empty() ? "" : ", ") + name; };
  if (!std::isnan(eval.loss)) add("test_loss");
  if (eval.accuracy) add("test_accuracy");
  if (eval.top_k_accuracy) add(top_k);
  for (const auto& entry : eval.metrics) add("val_" + entry.first);
  DPT_THROW(InvalidArgumentError, option_, " ", metric_, ": the evaluation does not report it (it reports ",
            reported.empty() ? std::string("nothing") : reported, ")");
}

bool MetricMonitor::observe(const EvalResult& eval, int64_t step) {
  const double value = value_in(eval);
  const bool improved = !best_ || (lower_is_better_ ? value < *best_ : value > *best_);
  if (improved) {
    best_ = value;
    best_step_ = step;
    without_improvement_ = 0;
  } else {
    ++without_improvement_;
  }
  return improved;
}

MonitorState MetricMonitor::state() const {
  MonitorState state;
  state.metric = metric_;
  state.best = best_;
  state.best_step = best_step_;
  state.evaluations_without_improvement = without_improvement_;
  return state;
}

void MetricMonitor::restore(const MonitorState& state) {
  if (state.metric != metric_) return;
  best_ = state.best;
  best_step_ = state.best_step;
  without_improvement_ = state.evaluations_without_improvement;
}

}  // namespace dpt
