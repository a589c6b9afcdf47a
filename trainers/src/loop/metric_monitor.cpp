#include "loop/metric_monitor.h"

#include <cmath>
#include <regex>
#include <utility>
#include <vector>

#include "dptrain/core/error.h"
#include "dptrain/core/strings.h"

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

namespace {

// Every metric an evaluation reported, under the name the options use for it.
std::vector<std::pair<std::string, double>> reported_metrics(const EvalResult& eval) {
  std::vector<std::pair<std::string, double>> reported;
  if (!std::isnan(eval.loss)) reported.emplace_back("test_loss", eval.loss);
  if (eval.accuracy) reported.emplace_back("test_accuracy", *eval.accuracy);
  if (eval.top_k_accuracy) {
    reported.emplace_back("test_top" + std::to_string(eval.top_k) + "_accuracy", *eval.top_k_accuracy);
  }
  for (const auto& [name, value] : eval.metrics) reported.emplace_back("val_" + name, value);
  return reported;
}

}  // namespace

double MetricMonitor::value_in(const EvalResult& eval) const {
  const auto reported = reported_metrics(eval);
  std::vector<std::string> names;
  for (const auto& [name, value] : reported) {
    if (name == metric_) return value;
    names.push_back(name);
  }
  DPT_THROW(InvalidArgumentError, option_, " ", metric_, ": the evaluation does not report it (it reports ",
            names.empty() ? std::string("nothing") : joined(names), ")");
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
