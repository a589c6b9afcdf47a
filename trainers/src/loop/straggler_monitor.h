// Which rank holds the others back. In synchronous data-parallel training every rank's step takes
// as long as the slowest rank's: the others wait for it in the gradient all-reduce, so step times
// are equal everywhere and say nothing. What differs is each rank's busy time per step - the step
// minus the time it waited for the gradient buckets after its backward (its exposed communication):
// data loading, forward, backward, optimizer.
//
//   StragglerMonitor monitor(world, options);   // collective: gathers the hostnames once
//   every step:      monitor.add_step(step, step_s, exposed_comm_s);
//   every log step:  if (auto spread = monitor.at_log_step(step)) report(*spread);
//   at the end:      for (auto& spread : monitor.finish(step)) report(spread);
//
// At each log step every rank starts one non-blocking all-gather of its mean busy time over the
// interval (8 bytes a rank); it is read at the next log step, by when it is long done, so nothing
// waits for it and each interval is reported one interval late (finish() reads the last one).
// A rank is named a straggler when it is the slowest for `persistence` intervals in a row with its
// busy time >= `threshold` times the median of the other ranks' (a slow interval alone is noise:
// a checkpoint, a page cache miss).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

struct RankSpread {
  int64_t first_step = 0, last_step = 0;  // the interval, optimizer steps (inclusive)
  std::vector<double> busy_s;             // each rank's mean busy time per step, by rank
  double median_s = 0;                    // over all ranks
  int slowest_rank = 0;
  std::string slowest_host;
  double slowdown = 1;                    // slowest / the median of the other ranks
  int intervals_slowest = 0;              // consecutive intervals this rank was slowest beyond the threshold
  bool straggler = false;                 // intervals_slowest >= persistence
  bool became_straggler = false;          // intervals_slowest == persistence: this interval made it one
  double max_s() const { return busy_s.at(static_cast<size_t>(slowest_rank)); }
};

class StragglerMonitor {
 public:
  static constexpr double kDefaultThreshold = 1.2;
  static constexpr int kDefaultPersistence = 3;

  // Collective (an all-gather of the hostnames).
  StragglerMonitor(CommunicatorPtr world, double threshold = kDefaultThreshold,
                   int persistence = kDefaultPersistence);
  ~StragglerMonitor();
  StragglerMonitor(const StragglerMonitor&) = delete;
  StragglerMonitor& operator=(const StragglerMonitor&) = delete;

  // After every optimizer step (`step`: its number): its wall time and how long it waited for
  // gradient communication (NaN where nothing was measured: all of it counted as busy).
  void add_step(int64_t step, double step_s, double exposed_comm_s);
  // At a log step, every rank: starts this interval's gather; returns the previous interval's spread.
  std::optional<RankSpread> at_log_step(int64_t step);
  // At the end of training, every rank: the spreads not yet returned, oldest first (the interval
  // gathered at the last log step, and the steps since it, if any).
  std::vector<RankSpread> finish(int64_t step);

 private:
  std::optional<RankSpread> collect();

  CommunicatorPtr world_;
  double threshold_;
  int persistence_;
  std::vector<std::string> hosts_;
  double busy_sum_s_ = 0;
  int64_t steps_ = 0;
  int64_t interval_start_ = 0;  // the first step since the last log step
  // The gather in flight and the interval it covers.
  torch::Tensor mine_, gathered_;
  WorkPtr gather_;
  int64_t pending_first_ = 0, pending_last_ = 0;
  int last_slowest_ = -1;
  int intervals_slowest_ = 0;
};

}  // namespace dpt
