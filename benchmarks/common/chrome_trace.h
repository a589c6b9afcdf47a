// A timeline in the Chrome trace-event format (open it in https://ui.perfetto.dev or
// chrome://tracing): one process row per rank, one thread row per activity stream
// (the training thread's forward/backward/optimizer, the communicator's bucket all-reduces).
//
//   ChromeTrace trace(rank);          // right after a barrier: t = 0 on every rank
//   trace.add("forward", "compute", start, Clock::now());
//   ... every rank: bytes = trace.serialize(); gather on rank 0 ...
//   ChromeTrace::write_merged(path, all_ranks_bytes);
//
// Events are "complete" events (ph "X") with ts/dur in microseconds. Timestamps are relative to
// each rank's origin, taken right after a barrier, so ranks line up to within the barrier's exit
// skew (microseconds on one node). add() is thread-safe: the DDP trace hook calls it from the
// communication thread while the training thread records backward.
#pragma once

#include <nlohmann/json.hpp>

#include <mutex>
#include <string>
#include <vector>

#include "timing.h"

namespace dpt::bench {

class ChromeTrace {
 public:
  // Thread rows of one rank.
  enum Row : int { kCompute = 0, kCommunication = 1 };

  explicit ChromeTrace(int rank, Clock::time_point origin = Clock::now());

  void add(const std::string& name, const std::string& category, Clock::time_point start, Clock::time_point end,
           int row = kCompute, nlohmann::json args = nlohmann::json::object());

  // The same with times in microseconds of std::chrono::steady_clock since its epoch (the clock of
  // dpt::TraceEvent, which DDP's trace recorder reports).
  void add_us(const std::string& name, const std::string& category, double start_us, double duration_us,
              int row = kCompute, nlohmann::json args = nlohmann::json::object());

  size_t size() const;
  // This rank's events as a JSON array text (what crosses to rank 0).
  std::string serialize() const;
  // One trace document from every rank's serialize() output, with process/thread names.
  static nlohmann::json merge(const std::vector<std::string>& per_rank_events);
  // merge() written to `path` (IoError naming it on failure).
  static void write_merged(const std::string& path, const std::vector<std::string>& per_rank_events);

 private:
  int rank_;
  Clock::time_point origin_;
  mutable std::mutex mutex_;
  nlohmann::json events_ = nlohmann::json::array();
};

}  // namespace dpt::bench
