// The watchdog of one NcclCommunicator (private): a thread that follows the collectives in flight,
// so that waiting for them never blocks the caller's thread. It is NCCL's late detector and its
// PeerLiveness at once (Note [From a stuck rank to every rank's error] in liveness/peer_liveness.h).
//
// Each collective's end event is handed to watch(). The thread polls the oldest one (collectives
// on the communicator's stream finish in issue order) and ncclCommGetAsyncError. When a collective
// is still running after the communicator's timeout, or NCCL reports an asynchronous error (a peer
// died, a network failure), it aborts the communicator (ncclCommAbort: the NCCL kernels stop, so a
// thread blocked in a CUDA synchronisation wakes up), every later call and wait() on it throws
// with the reason, and the reason is logged. A program blocked elsewhere could still never notice:
// unless DPTRAIN_WATCHDOG_EXIT=0, the watchdog then ends the process after a short grace period
// (dpt::fail_fast, exit code 3), as PyTorch's NCCL watchdog does, so no rank waits forever.
#pragma once

#include <ATen/cuda/CUDAEvent.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "liveness/flight_recorder.h"
#include "liveness/peer_liveness.h"
#include "nccl_state.h"

namespace dpt::detail {

class NcclWatchdog final : public PeerLiveness {
 public:
  explicit NcclWatchdog(std::shared_ptr<NcclCommunicator::State> state);
  ~NcclWatchdog() override;  // stops and joins the thread
  NcclWatchdog(const NcclWatchdog&) = delete;
  NcclWatchdog& operator=(const NcclWatchdog&) = delete;

  // Follows the collective `description` that completes when `done` fires.
  void watch(std::shared_ptr<at::cuda::CUDAEvent> done, std::string description);
  // Blocks until every watched collective completed; false when `deadline` passed first or the
  // communicator broke.
  bool drain(std::chrono::steady_clock::time_point deadline);
  // The last collectives of this communicator (logged when the watchdog aborts it).
  const FlightRecorder& recorder() const { return recorder_; }
  // NCCL's asynchronous error (a peer died, the network failed), as the reason to abort.
  std::optional<std::string> gone_peer() override;

 private:
  struct Pending {
    std::shared_ptr<at::cuda::CUDAEvent> done;
    std::string description;
    std::chrono::steady_clock::time_point issued;
    int64_t flight_index = 0;
  };
  void loop();
  // One look at the communicator; returns the reason when it must be aborted.
  std::string inspect();
  void fail(const std::string& reason);

  std::shared_ptr<NcclCommunicator::State> state_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<Pending> pending_;
  bool stopping_ = false;
  std::thread thread_;
  FlightRecorder recorder_{FlightRecorder::capacity_from_env()};
};

}  // namespace dpt::detail
