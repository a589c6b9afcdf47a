// Work for a collective run on host copies of CUDA tensors (private; MpiCommunicator without a
// CUDA-aware MPI). The device->host copy happened at issue (synchronously, after the caller's
// stream produced the data); wait() waits for the host collective, then copies each host result
// back into its device tensor on the caller's current stream, so work queued there afterwards
// sees the result - the contract of Work::wait().
#pragma once

#include <torch/torch.h>

#include <vector>

#include "dptrain/parallel/work.h"

namespace dpt::detail {

// A pinned host copy of `tensor` (a CUDA tensor), complete when this returns.
torch::Tensor stage_to_host(const torch::Tensor& tensor, bool copy_values = true);

class StagedWork final : public Work {
 public:
  StagedWork(WorkPtr inner, std::vector<torch::Tensor> host_results, std::vector<torch::Tensor> device_results);
  void wait() override;
  bool is_completed() override { return inner_->is_completed(); }

 private:
  WorkPtr inner_;
  std::vector<torch::Tensor> host_results_;
  std::vector<torch::Tensor> device_results_;
  bool copied_back_ = false;
};

}  // namespace dpt::detail
