#include "nccl_work.h"

#include <c10/cuda/CUDAStream.h>

#include <thread>

#include "dptrain/core/error.h"
#include "nccl_check.h"

namespace dpt::detail {

NcclWork::NcclWork(std::shared_ptr<NcclCommunicator::State> state, std::string description,
                   std::vector<torch::Tensor> tensors)
    : state_(std::move(state)), description_(std::move(description)), tensors_(std::move(tensors)),
      issued_(std::chrono::steady_clock::now()) {
  CUDA_CHECK(cudaEventCreateWithFlags(&end_, cudaEventDisableTiming), state_->who, ": ", description_);
  CUDA_CHECK(cudaEventRecord(end_, state_->stream.stream()), state_->who, ": ", description_);
}

NcclWork::~NcclWork() {
  if (end_ != nullptr) cudaEventDestroy(end_);
}

bool NcclWork::is_completed() {
  if (state_->broken) return true;
  return cudaEventQuery(end_) != cudaErrorNotReady;
}

void NcclWork::wait() {
  for (;;) {
    DPT_CHECK(!state_->broken, CommunicationError, state_->who, ": ", description_,
              ": the communicator was aborted (", state_->broken_reason, ")");
    cudaError_t status = cudaEventQuery(end_);
    if (status == cudaSuccess) break;
    if (status != cudaErrorNotReady) CUDA_CHECK(status, state_->who, ": ", description_);
    ncclResult_t async_error = ncclSuccess;
    ncclCommGetAsyncError(state_->comm, &async_error);
    if (async_error != ncclSuccess && async_error != ncclInProgress) {
      std::string reason = concat(state_->who, ": ", description_, " failed: ", ncclGetErrorString(async_error),
                                  " (a peer rank died or NCCL hit a network error)");
      state_->abort(reason);
      DPT_THROW(CommunicationError, reason);
    }
    const auto limit = std::chrono::milliseconds(state_->timeout_ms.load());
    if (std::chrono::steady_clock::now() - issued_ > limit) {
      std::string reason = concat(state_->who, ": ", description_, " did not complete within ",
                                  std::chrono::duration<double>(limit).count(),
                                  " s (a peer rank died, hangs, or called a different collective); NCCL "
                                  "communicator aborted");
      state_->abort(reason);
      DPT_THROW(TimeoutError, reason);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  // Work the caller queues after wait() sees the result.
  auto current = c10::cuda::getCurrentCUDAStream(state_->stream.device_index());
  CUDA_CHECK(cudaStreamWaitEvent(current.stream(), end_, 0), state_->who, ": ", description_);
}

}  // namespace dpt::detail
