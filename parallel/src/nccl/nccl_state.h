// What a NcclCommunicator and its in-flight Work share (private): the NCCL communicator, the
// stream collectives run on, and whether the communicator is still healthy.
#pragma once

#include <c10/cuda/CUDAStream.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

#include "dptrain/parallel/nccl_communicator.h"

namespace dpt {

struct NcclCommunicator::State {
  State(ncclComm_t comm_, c10::cuda::CUDAStream stream_, std::string who_, std::chrono::milliseconds timeout)
      : comm(comm_), stream(stream_), who(std::move(who_)), timeout_ms(timeout.count()) {}

  ncclComm_t comm;
  c10::cuda::CUDAStream stream;
  const std::string who;
  std::atomic<long long> timeout_ms;
  std::atomic<bool> broken{false};
  std::string broken_reason;  // under mutex
  std::mutex mutex;

  // ncclCommAbort once, remembering why; later calls fail with `reason`.
  void abort(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex);
    if (broken) return;
    broken_reason = reason;
    broken = true;
    ncclCommAbort(comm);
  }
};

}  // namespace dpt
