// A Work on the NCCL stream (private): done when its end event fires. See nccl_communicator.h.
//
// wait() does not block the host: it makes the caller's current stream wait for the end event
// (cudaStreamWaitEvent), so kernels queued there afterwards see the result, and reading the result
// on the host (.item(), .cpu()) waits for it as any CUDA result does. It throws when the watchdog
// aborted the communicator. A host-blocking Work (barrier) also waits for the event on the host.
#pragma once

#include <ATen/cuda/CUDAEvent.h>

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dptrain/parallel/comm/work.h"
#include "nccl_state.h"

namespace dpt::detail {

class NcclWork final : public Work {
 public:
  // `done` is recorded on the state's stream after the collective; `tensors` stay referenced for
  // the Work's lifetime.
  NcclWork(std::shared_ptr<NcclCommunicator::State> state, std::string description,
           std::shared_ptr<at::cuda::CUDAEvent> done, std::vector<torch::Tensor> tensors, bool blocks_host);

  void wait() override;
  bool is_completed() override;

 private:
  void throw_if_broken() const;

  std::shared_ptr<NcclCommunicator::State> state_;
  std::string description_;
  std::shared_ptr<at::cuda::CUDAEvent> done_;
  std::vector<torch::Tensor> tensors_;
  bool blocks_host_;
};

}  // namespace dpt::detail
