#include "staged_work.h"

namespace dpt::detail {

torch::Tensor stage_to_host(const torch::Tensor& tensor, bool copy_values) {
  auto host = torch::empty(tensor.sizes(), torch::TensorOptions(tensor.scalar_type()).pinned_memory(true));
  if (copy_values) host.copy_(tensor, /*non_blocking=*/false);
  return host;
}

StagedWork::StagedWork(WorkPtr inner, std::vector<torch::Tensor> host_results, std::vector<torch::Tensor> device_results)
    : inner_(std::move(inner)), host_results_(std::move(host_results)), device_results_(std::move(device_results)) {}

void StagedWork::wait() {
  inner_->wait();
  if (copied_back_) return;
  // Non-blocking from pinned memory: ordered on the caller's current stream.
  for (size_t i = 0; i < host_results_.size(); ++i) device_results_[i].copy_(host_results_[i], /*non_blocking=*/true);
  copied_back_ = true;
}

}  // namespace dpt::detail
