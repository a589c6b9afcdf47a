// What a NcclCommunicator, its watchdog and its in-flight Work share (private): the NCCL
// communicator handle, the stream collectives run on, and whether the communicator is healthy.
//
// Every NCCL call on `comm` (launches, ncclCommGetAsyncError, abort, finalize, destroy) happens
// under `nccl_mutex`, so the watchdog's polling and an abort never race a launch on the caller's
// thread. The communicator is non-blocking (ncclConfig_t::blocking = 0): a call may return
// ncclInProgress, and settle() then polls until NCCL is done with it or the deadline passes.
#pragma once

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "dptrain/parallel/nccl/nccl_communicator.h"

namespace c10d {
class Store;
}

namespace dpt {

struct NcclCommunicator::State {
  State(ncclComm_t comm_, c10::cuda::CUDAStream stream_, std::string who_, std::chrono::milliseconds timeout);

  ncclComm_t comm;
  c10::cuda::CUDAStream stream;
  const std::string who;
  std::atomic<long long> timeout_ms;
  std::mutex nccl_mutex;
  // The rendezvous store of a world created without MPI: rank 0 serves it, so it lives as long as
  // the communicator (never a static).
  c10::intrusive_ptr<c10d::Store> rendezvous;

  bool broken() const { return broken_.load(); }
  std::string broken_reason() const;

  // ncclCommAbort once, remembering why; later calls fail with `reason`. Returns false when the
  // communicator was already broken (or destroyed).
  bool abort(const std::string& reason);
  // After a call that returned ncclInProgress: polls ncclCommGetAsyncError until NCCL is done.
  // An error, or no answer before `deadline`, aborts the communicator and throws
  // CommunicationError / TimeoutError naming `what`.
  void settle(ncclResult_t launched, std::chrono::steady_clock::time_point deadline, const std::string& what);
  // The asynchronous error NCCL reports now (ncclSuccess when none), for the watchdog.
  ncclResult_t async_error();
  // Orderly end: ncclCommFinalize (bounded by `deadline`) then ncclCommDestroy; aborts instead when
  // finalizing fails or takes too long. No-op when already broken.
  void destroy(std::chrono::steady_clock::time_point deadline);

  std::chrono::steady_clock::time_point deadline_from_now() const {
    return std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms.load());
  }

 private:
  std::atomic<bool> broken_{false};
  mutable std::mutex reason_mutex_;
  std::string broken_reason_;
};

}  // namespace dpt
