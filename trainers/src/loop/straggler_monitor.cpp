#include "loop/straggler_monitor.h"

#include <algorithm>
#include <cmath>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "loop/background_collective.h"

namespace dpt {
namespace {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace

StragglerMonitor::StragglerMonitor(CommunicatorPtr world, double threshold, int persistence)
    : world_(std::move(world)), threshold_(threshold), persistence_(std::max(persistence, 1)) {
  DPT_CHECK(threshold_ >= 1, InvalidArgumentError, "straggler threshold must be >= 1, got ", threshold_);
  const std::string mine = env::host_name();
  for (const auto& bytes : world_->allgather_bytes(Bytes(mine.begin(), mine.end()))) {
    hosts_.emplace_back(bytes.begin(), bytes.end());
  }
}

StragglerMonitor::~StragglerMonitor() { settle_background_collective(gather_, {mine_, gathered_}); }

void StragglerMonitor::add_step(int64_t step, double step_s, double exposed_comm_s) {
  if (steps_ == 0) interval_start_ = step;
  busy_sum_s_ += std::isfinite(exposed_comm_s) ? std::max(step_s - exposed_comm_s, 0.0) : step_s;
  ++steps_;
}

std::optional<RankSpread> StragglerMonitor::at_log_step(int64_t step) {
  std::optional<RankSpread> previous = collect();
  if (steps_ == 0) return previous;
  // The gather runs on the communicator's device; 8 bytes a rank.
  mine_ = torch::full({1}, busy_sum_s_ / static_cast<double>(steps_), torch::dtype(torch::kFloat64))
              .to(world_->device());
  gathered_ = torch::empty({world_->size()}, mine_.options());
  gather_ = world_->allgather_async(mine_, gathered_);
  pending_first_ = interval_start_;
  pending_last_ = step;
  busy_sum_s_ = 0;
  steps_ = 0;
  return previous;
}

std::vector<RankSpread> StragglerMonitor::finish(int64_t step) {
  std::vector<RankSpread> spreads;
  // The interval gathered at the last log step, then the steps since it: gathered now, at the
  // end, when waiting costs nothing.
  if (auto previous = at_log_step(step)) spreads.push_back(std::move(*previous));
  if (auto last = collect()) spreads.push_back(std::move(*last));
  return spreads;
}

std::optional<RankSpread> StragglerMonitor::collect() {
  if (!gather_) return std::nullopt;
  gather_->wait();
  gather_.reset();
  const auto host = gathered_.cpu();
  RankSpread spread;
  spread.first_step = pending_first_;
  spread.last_step = pending_last_;
  spread.busy_s.assign(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
  spread.median_s = median(spread.busy_s);
  spread.slowest_rank = static_cast<int>(std::max_element(spread.busy_s.begin(), spread.busy_s.end()) -
                                         spread.busy_s.begin());
  spread.slowest_host = hosts_.at(static_cast<size_t>(spread.slowest_rank));
  std::vector<double> others = spread.busy_s;
  others.erase(others.begin() + spread.slowest_rank);
  const double others_median = median(others);
  spread.slowdown = others_median > 0 ? spread.max_s() / others_median : 1.0;
  const bool beyond = spread.slowdown >= threshold_;
  intervals_slowest_ = beyond ? (spread.slowest_rank == last_slowest_ ? intervals_slowest_ + 1 : 1) : 0;
  last_slowest_ = beyond ? spread.slowest_rank : -1;
  spread.intervals_slowest = intervals_slowest_;
  spread.straggler = intervals_slowest_ >= persistence_;
  spread.became_straggler = intervals_slowest_ == persistence_;
  return spread;
}

}  // namespace dpt
