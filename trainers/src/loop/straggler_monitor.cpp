#include "loop/straggler_monitor.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"

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

StragglerMonitor::~StragglerMonitor() {
  if (!gather_) return;
  if (std::uncaught_exceptions() == 0) {
    try {
      gather_->wait();  // every rank started it; every rank finishes it
      return;
    } catch (const std::exception&) {
      // A peer failed at the very end; the error that matters is reported elsewhere.
    }
  }
  // Leaving on an error: the gather may never complete, so its buffers stay alive (as
  // StopAgreement's flag does) for the rest of a process that is going down.
  static std::vector<torch::Tensor> abandoned;
  abandoned.push_back(mine_);
  abandoned.push_back(gathered_);
}

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

std::optional<RankSpread> StragglerMonitor::finish(int64_t step) {
  if (steps_ > 0) {
    // The steps since the last log step: gathered now, at the end, when waiting costs nothing.
    std::optional<RankSpread> previous = at_log_step(step);
    std::optional<RankSpread> last = collect();
    return last ? last : previous;
  }
  return collect();
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
