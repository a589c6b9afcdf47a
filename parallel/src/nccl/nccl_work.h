// A Work on the NCCL stream (private): done when its end event fires. See nccl_communicator.h.
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "dptrain/parallel/work.h"
#include "nccl_state.h"

namespace dpt::detail {

class NcclWork final : public Work {
 public:
  // Records the end event on the state's stream now; `tensors` stay alive until the work dies.
  NcclWork(std::shared_ptr<NcclCommunicator::State> state, std::string description, std::vector<torch::Tensor> tensors);
  ~NcclWork() override;

  void wait() override;
  bool is_completed() override;

 private:
  std::shared_ptr<NcclCommunicator::State> state_;
  std::string description_;
  std::vector<torch::Tensor> tensors_;
  cudaEvent_t end_ = nullptr;
  std::chrono::steady_clock::time_point issued_;
};

}  // namespace dpt::detail
