#include "nccl_state.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <thread>

#include "dptrain/core/error.h"

namespace dpt {

NcclCommunicator::State::State(ncclComm_t comm_, c10::cuda::CUDAStream stream_, std::string who_,
                               std::chrono::milliseconds timeout)
    : comm(comm_), stream(stream_), who(std::move(who_)), timeout_ms(timeout.count()) {}

std::string NcclCommunicator::State::broken_reason() const {
  std::lock_guard<std::mutex> lock(reason_mutex_);
  return broken_reason_;
}

bool NcclCommunicator::State::abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(nccl_mutex);
  {
    std::lock_guard<std::mutex> reason_lock(reason_mutex_);
    if (broken_) return false;
    broken_reason_ = reason;
    broken_ = true;
  }
  ncclCommAbort(comm);
  return true;
}

ncclResult_t NcclCommunicator::State::async_error() {
  std::lock_guard<std::mutex> lock(nccl_mutex);
  if (broken_) return ncclSuccess;
  ncclResult_t result = ncclSuccess;
  ncclCommGetAsyncError(comm, &result);
  return result;
}

void NcclCommunicator::State::settle(ncclResult_t launched, std::chrono::steady_clock::time_point deadline,
                                     const std::string& what) {
  ncclResult_t state = launched;
  // A launch that NCCL finishes in the background usually does so within microseconds: poll
  // without sleeping first (PyTorch busy-polls here too), then back off.
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
  while (state == ncclInProgress) {
    const auto now = std::chrono::steady_clock::now();
    if (now > deadline) {
      std::string reason = detail::concat(who, ": ", what, " did not complete within ", timeout_ms.load() / 1000.0,
                                          " s (a rank is missing, died or hangs); NCCL communicator aborted");
      abort(reason);
      DPT_THROW(TimeoutError, reason);
    }
    if (now < spin_until) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    std::lock_guard<std::mutex> lock(nccl_mutex);
    if (broken_) DPT_THROW(CommunicationError, who, ": ", what, ": the communicator was aborted (", broken_reason(), ")");
    ncclCommGetAsyncError(comm, &state);
  }
  if (state != ncclSuccess) {
    const char* detail = ncclGetLastError(nullptr);
    std::string reason = detail::concat(who, ": ", what, " failed: ", ncclGetErrorString(state),
                                        detail && *detail ? detail::concat(" (", detail, ")") : std::string());
    abort(reason);
    DPT_THROW(CommunicationError, reason);
  }
}

void NcclCommunicator::State::destroy(std::chrono::steady_clock::time_point deadline) {
  if (broken_) return;
  try {
    ncclResult_t rc;
    {
      std::lock_guard<std::mutex> lock(nccl_mutex);
      rc = ncclCommFinalize(comm);
    }
    settle(rc, deadline, "finalizing the communicator");
  } catch (...) {
    return;  // settle() aborted it
  }
  std::lock_guard<std::mutex> lock(nccl_mutex);
  {
    std::lock_guard<std::mutex> reason_lock(reason_mutex_);
    if (broken_) return;
    broken_reason_ = "the communicator was destroyed";
    broken_ = true;
  }
  ncclCommDestroy(comm);
}

}  // namespace dpt
