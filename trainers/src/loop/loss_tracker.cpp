#include "loop/loss_tracker.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "dptrain/core/error.h"

namespace dpt {

LossTracker::LossTracker(CommunicatorPtr world, torch::Device device)
    : world_(std::move(world)), device_(device) {
  first_bad_ = torch::full({}, -1, torch::TensorOptions(torch::kInt64).device(device_));
  start_epoch();
}

void LossTracker::start_epoch() {
  epoch_sum_ = torch::zeros({}, torch::TensorOptions(torch::kDouble).device(device_));
  epoch_count_ = 0;
}

void LossTracker::record(const torch::Tensor& local_loss, int64_t step, bool counted) {
  torch::NoGradGuard no_grad;
  last_ = local_loss.detach().to(device_, torch::kDouble);
  auto bad_here = torch::logical_and(first_bad_.lt(0), torch::logical_not(torch::isfinite(last_)));
  first_bad_ = torch::where(bad_here, torch::full({}, step, first_bad_.options()), first_bad_);
  if (counted) {
    epoch_sum_ += last_;
    ++epoch_count_;
  }
  const int64_t slot = static_cast<int64_t>(unreported_steps_.size());
  if (!unreported_.defined() || slot == unreported_.size(0)) {
    auto grown = torch::empty({std::max<int64_t>(64, 2 * slot)}, last_.options());
    if (slot > 0) grown.narrow(0, 0, slot).copy_(unreported_.narrow(0, 0, slot));
    unreported_ = grown;
  }
  unreported_[slot].copy_(last_);  // a device copy: no host synchronisation
  unreported_steps_.push_back(step);
}

std::vector<std::pair<int64_t, double>> LossTracker::take_step_losses() {
  std::vector<std::pair<int64_t, double>> losses;
  if (unreported_steps_.empty()) return losses;
  const int64_t count = static_cast<int64_t>(unreported_steps_.size());
  const int world = world_ ? world_->size() : 1;
  auto summed = sum_over_ranks(unreported_.narrow(0, 0, count).clone());
  const double* values = summed.data_ptr<double>();
  for (int64_t i = 0; i < count; ++i) losses.emplace_back(unreported_steps_[i], values[i] / world);
  unreported_steps_.clear();
  return losses;
}

torch::Tensor LossTracker::sum_over_ranks(torch::Tensor local) {
  if (world_ && world_->size() > 1) {
    local = local.to(world_->device()).contiguous();
    world_->allreduce(local);
  }
  return local.to(torch::kCPU);
}

bool LossTracker::finite_everywhere(const torch::Tensor& local_loss) {
  auto bad = torch::logical_not(torch::isfinite(local_loss.detach())).to(torch::kInt32).reshape({1});
  return sum_over_ranks(bad).item<int32_t>() == 0;
}

void LossTracker::check_finite(const std::string& advice) {
  // [ranks with a bad step, -(first bad step)] summed and maxed: two tiny collectives, only here.
  auto has_bad = first_bad_.ge(0).to(torch::kInt64).reshape({1});
  const int64_t ranks = sum_over_ranks(has_bad).item<int64_t>();
  if (ranks == 0) return;
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max() / 2;
  auto negated = torch::where(first_bad_.ge(0), -first_bad_, torch::full({}, -kNone, first_bad_.options())).reshape({1});
  if (world_ && world_->size() > 1) {
    negated = negated.to(world_->device());
    world_->allreduce(negated, ReduceOp::Max);
  }
  const int64_t step = -negated.cpu().item<int64_t>();
  DPT_THROW(NumericalError, "the loss is NaN or Inf at step ", step, " on ", ranks, " rank(s); ", advice);
}

double LossTracker::epoch_mean() {
  if (epoch_count_ == 0) return NAN;
  const int world = world_ ? world_->size() : 1;
  return sum_over_ranks(epoch_sum_.reshape({1})).item<double>() / world / static_cast<double>(epoch_count_);
}

}  // namespace dpt
