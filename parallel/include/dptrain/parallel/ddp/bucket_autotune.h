// DdpOptions::bucket_cap_auto: the bucket cap chosen from this model and this wire, not guessed.
//
// The 25 MB default trades two costs: every collective has a fixed cost (latency, launch), so
// small buckets pay it often; and a bucket cannot start until its last gradient is ready, so big
// buckets start late and leave more of the reduction exposed after the backward ends. Where the
// balance lies depends on the model's gradient sizes, on when backward produces them, and on the
// all-reduce's cost curve - all measured here:
//  1. a warm-up iteration, then one synchronized backward records when each gradient became ready
//     (seconds after the backward started; on a GPU the stream is synchronized at each, for that
//     iteration only);
//  2. at the bucket rebuild, every rank times all-reduces of sizes from 16 KiB up to the model's
//     whole gradient (measure_allreduce_curve: one warm-up and three timed, the median);
//  3. the deciding rank replays that backward for each candidate cap (simulate_reduction): buckets
//     launched in bucket order when complete, reduced one after another at the measured cost;
//     the cap whose last reduction ends first wins. Ends within 2% of the best are a tie (the
//     model leaves out what the collectives cost the compute: on a CPU they take its cores), won
//     by the 25 MB default if it is among them, else by the largest cap (fewest collectives).
//     The choice is broadcast with the bucket order, so every rank builds the same buckets.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

// Seconds an all-reduce of a number of bytes takes: measured points, interpolated linearly
// between them and extrapolated from the last two beyond them.
class AllreduceCurve {
 public:
  AllreduceCurve() = default;
  explicit AllreduceCurve(std::vector<std::pair<double, double>> bytes_seconds);
  double seconds(double bytes) const;
  const std::vector<std::pair<double, double>>& points() const { return points_; }

 private:
  std::vector<std::pair<double, double>> points_;  // ascending bytes
};

// For timing on a GPU: the host waits until the device's current stream has done its queued work
// (nothing to wait for on the CPU).
void wait_for_device(const torch::Device& device);

// Collective (every rank, same arguments): times all-reduces of `dtype` on the communicator's
// device, sizes from 16 KiB growing 4x up to max_bytes (max_bytes itself included).
AllreduceCurve measure_allreduce_curve(Communicator& comm, torch::ScalarType dtype, size_t max_bytes);

// When the last bucket's reduction ends, in seconds after the backward started: buckets (lists of
// parameter indices, in launch order) are launched in order once all their gradients are ready
// (ready_s by parameter index), and reduced one at a time.
double simulate_reduction(const std::vector<std::vector<size_t>>& buckets, const std::vector<double>& ready_s,
                          const std::vector<size_t>& bytes, const AllreduceCurve& curve);

struct BucketCapTrial {
  size_t cap_bytes = 0;
  size_t buckets = 0;
  double end_s = 0;  // simulate_reduction's answer
};

struct BucketCapChoice {
  size_t cap_bytes = 0;
  double backward_s = 0;  // when the last gradient was ready
  std::vector<BucketCapTrial> trials;  // every candidate, ascending cap
  std::string summary() const;         // one line for the log
};

// The candidates: 256 KiB doubling up to the first cap that holds every gradient in one bucket,
// and the 25 MB default. `order` and first_cap_bytes as for assign_buckets; the first bucket's cap
// is not tuned (it stays min(first_cap_bytes, cap): small, so the wire starts early).
BucketCapChoice choose_bucket_cap(const std::vector<torch::Tensor>& params, const std::vector<size_t>& order,
                                  const std::vector<double>& ready_s, size_t first_cap_bytes,
                                  const AllreduceCurve& curve);

}  // namespace dpt
