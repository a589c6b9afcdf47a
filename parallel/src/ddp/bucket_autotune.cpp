#include "dptrain/parallel/ddp/bucket_autotune.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "dptrain/core/error.h"
#include "dptrain/parallel/ddp/bucket.h"

namespace dpt {
namespace {

constexpr size_t kSmallestBytes = 16u << 10;
constexpr size_t kLargestMeasuredBytes = 256u << 20;  // beyond: extrapolated, not allocated
constexpr size_t kSmallestCap = 256u << 10;
constexpr size_t kDefaultCap = 25u << 20;
// Simulated ends this close to the best are a tie: the model leaves out what the wire costs the
// compute (on a CPU the collectives take cores from the backward), so a smaller gain is noise.
constexpr double kTie = 0.02;

double median_of_three(double a, double b, double c) { return std::max(std::min(a, b), std::min(std::max(a, b), c)); }

}  // namespace

void wait_for_device(const torch::Device& device) {
  if (device.is_cpu()) return;
  c10::impl::getDeviceGuardImpl(device.type())->getStream(device).synchronize();
}

AllreduceCurve::AllreduceCurve(std::vector<std::pair<double, double>> bytes_seconds) : points_(std::move(bytes_seconds)) {
  std::sort(points_.begin(), points_.end());
}

double AllreduceCurve::seconds(double bytes) const {
  if (points_.empty()) return 0;
  if (points_.size() == 1) return points_.front().second * std::max(bytes, 1.0) / std::max(points_.front().first, 1.0);
  auto upper = std::lower_bound(points_.begin(), points_.end(), std::make_pair(bytes, 0.0));
  if (upper == points_.begin()) return points_.front().second;  // below the smallest: its fixed cost
  if (upper == points_.end()) upper = points_.end() - 1;        // beyond the largest: the last slope
  const auto& [x1, y1] = *upper;
  const auto& [x0, y0] = *(upper - 1);
  const double slope = x1 > x0 ? (y1 - y0) / (x1 - x0) : 0.0;
  return std::max(y0 + slope * (bytes - x0), 0.0);
}

AllreduceCurve measure_allreduce_curve(Communicator& comm, torch::ScalarType dtype, size_t max_bytes) {
  const torch::Device device = comm.device();
  const size_t item = c10::elementSize(dtype);
  max_bytes = std::clamp(max_bytes, kSmallestBytes, kLargestMeasuredBytes);
  std::vector<size_t> sizes;
  for (size_t bytes = kSmallestBytes; bytes < max_bytes; bytes *= 4) sizes.push_back(bytes);
  sizes.push_back(max_bytes);
  auto buffer = torch::zeros({static_cast<int64_t>(max_bytes / item)}, torch::dtype(dtype).device(device));
  std::vector<std::pair<double, double>> points;
  for (size_t bytes : sizes) {
    auto slice = buffer.narrow(0, 0, static_cast<int64_t>(std::max<size_t>(bytes / item, 1)));
    double timed[3];
    for (int rep = -1; rep < 3; ++rep) {  // rep -1: warm-up
      const auto start = std::chrono::steady_clock::now();
      comm.allreduce(slice);  // blocking; on a GPU, a stream dependency: hence the wait
      wait_for_device(device);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (rep >= 0) timed[rep] = s;
    }
    points.emplace_back(static_cast<double>(bytes), median_of_three(timed[0], timed[1], timed[2]));
  }
  return AllreduceCurve(std::move(points));
}

double simulate_reduction(const std::vector<std::vector<size_t>>& buckets, const std::vector<double>& ready_s,
                          const std::vector<size_t>& bytes, const AllreduceCurve& curve) {
  double launched = 0;  // buckets launch in order: none before the one ahead of it
  double wire_free = 0;
  for (const auto& bucket : buckets) {
    double ready = 0, size = 0;
    for (size_t index : bucket) {
      ready = std::max(ready, ready_s.at(index));
      size += static_cast<double>(bytes.at(index));
    }
    launched = std::max(launched, ready);
    wire_free = std::max(wire_free, launched) + curve.seconds(size);
  }
  return wire_free;
}

BucketCapChoice choose_bucket_cap(const std::vector<torch::Tensor>& params, const std::vector<size_t>& order,
                                  const std::vector<double>& ready_s, size_t first_cap_bytes,
                                  const AllreduceCurve& curve) {
  DPT_ASSERT(ready_s.size() == params.size() && order.size() == params.size());
  std::vector<size_t> bytes(params.size());
  size_t total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    bytes[i] = static_cast<size_t>(params[i].numel()) * params[i].element_size();
    total += bytes[i];
  }
  std::vector<size_t> caps;
  for (size_t cap = kSmallestCap;; cap *= 2) {
    caps.push_back(cap);
    if (cap >= total) break;
  }
  caps.push_back(kDefaultCap);
  std::sort(caps.begin(), caps.end());
  caps.erase(std::unique(caps.begin(), caps.end()), caps.end());

  BucketCapChoice choice;
  for (double t : ready_s) choice.backward_s = std::max(choice.backward_s, t);
  for (size_t cap : caps) {
    const auto buckets = assign_buckets(params, order, std::min(first_cap_bytes, cap), cap);
    choice.trials.push_back({cap, buckets.size(), simulate_reduction(buckets, ready_s, bytes, curve)});
  }
  double best = choice.trials.front().end_s;
  for (const auto& trial : choice.trials) best = std::min(best, trial.end_s);
  // Within the tie band: the default (what everyone else runs), else the largest (fewest collectives).
  for (const auto& trial : choice.trials) {  // ascending
    if (trial.end_s > best * (1 + kTie)) continue;
    if (choice.cap_bytes != kDefaultCap) choice.cap_bytes = trial.cap_bytes;
  }
  return choice;
}

std::string BucketCapChoice::summary() const {
  auto mb = [](size_t bytes) { return fmt::format("{:g} MB", static_cast<double>(bytes) / (1 << 20)); };
  std::string text = fmt::format("bucket cap {} (backward {:.2f} ms; the last reduction ends, simulated, by cap:",
                                 mb(cap_bytes), backward_s * 1e3);
  for (const auto& trial : trials) {
    text += fmt::format(" {} {:.2f} ms ({} buckets){}", mb(trial.cap_bytes), trial.end_s * 1e3, trial.buckets,
                        trial.cap_bytes == cap_bytes ? " <-" : "");
    text += &trial == &trials.back() ? "" : ",";
  }
  return text + ")";
}

}  // namespace dpt
