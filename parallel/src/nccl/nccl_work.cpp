#include "nccl_work.h"

#include <c10/cuda/CUDAStream.h>

#include <thread>

#include "dptrain/core/error.h"

namespace dpt::detail {

NcclWork::NcclWork(std::shared_ptr<NcclCommunicator::State> state, std::string description,
                   std::shared_ptr<at::cuda::CUDAEvent> done, std::vector<torch::Tensor> tensors, bool blocks_host)
    : state_(std::move(state)),
      description_(std::move(description)),
      done_(std::move(done)),
      tensors_(std::move(tensors)),
      blocks_host_(blocks_host) {}

void NcclWork::throw_if_broken() const {
  if (!state_->broken()) return;
  const std::string reason = state_->broken_reason();
  if (reason.find("did not complete within") != std::string::npos) {
    DPT_THROW(TimeoutError, state_->who, ": ", description_, ": ", reason);
  }
  DPT_THROW(CommunicationError, state_->who, ": ", description_, ": the communicator was aborted (", reason, ")");
}

bool NcclWork::is_completed() { return state_->broken() || done_->query(); }

void NcclWork::wait() {
  throw_if_broken();
  if (blocks_host_) {
    // Polled rather than cudaEventSynchronize: the watchdog's abort must be able to end the wait.
    while (!done_->query()) {
      throw_if_broken();
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    throw_if_broken();
  }
  done_->block(c10::cuda::getCurrentCUDAStream(state_->stream.device_index()));
}

}  // namespace dpt::detail
