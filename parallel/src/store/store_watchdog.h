// The store backend's PeerLiveness (private, liveness/peer_liveness.h): heartbeats that tell the
// ranks of a torchrun-style job, which has no mpirun to tear it down, that a peer died.
//
// Why: with MPI, a killed rank makes mpirun end the whole job. Over a TCP store nothing does:
// when a rank other than rank 0 dies, the others just wait for its key until the collective
// timeout (300 s by default). Each rank therefore bumps its own counter in the store every
// second, on a connection of its own (a collective blocked in a store read holds the other one),
// and watches everyone else's. A peer whose counter has not moved for `deadline` is reported by
// gone_peer(); a collective waiting while a peer is dead fails at once, naming the rank. A rank
// that ends normally says so first, so finishing early is never mistaken for dying.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "liveness/peer_liveness.h"

namespace dpt::detail {

class StoreWatchdog final : public PeerLiveness {
 public:
  // `store` must be a connection used by nothing else. Starts the heartbeat thread.
  StoreWatchdog(c10::intrusive_ptr<c10d::Store> store, int rank, int size, std::chrono::milliseconds interval,
              std::chrono::milliseconds deadline);
  // Announces a normal exit, then stops the thread.
  ~StoreWatchdog() override;
  StoreWatchdog(const StoreWatchdog&) = delete;
  StoreWatchdog& operator=(const StoreWatchdog&) = delete;

  // "rank 2 stopped responding (no heartbeat for 20 s)" once a peer is found dead.
  std::optional<std::string> gone_peer() override;

 private:
  void loop();
  void beat_and_check();

  c10::intrusive_ptr<c10d::Store> store_;
  const int rank_;
  const int size_;
  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds deadline_;
  // Last counter value seen per peer, and when it last changed (only the thread touches these).
  std::vector<int64_t> last_count_;
  std::vector<std::chrono::steady_clock::time_point> last_change_;

  mutable std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::optional<std::string> dead_;
  std::thread thread_;
};

}  // namespace dpt::detail
