#include "mpi/mpi_work.h"

#include "dptrain/core/config.h"

#if DPTRAIN_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace dpt::detail {

Staged stage(const torch::Tensor& tensor, bool copy_values, bool device_pointers_ok) {
  Staged staged{tensor, [] {}, false};
#if DPTRAIN_HAVE_CUDA
  if (!tensor.is_cuda()) return staged;
  c10::cuda::CUDAGuard guard(tensor.device());
  auto producer = c10::cuda::getCurrentCUDAStream(tensor.device().index());
  auto produced = std::make_shared<at::cuda::CUDAEvent>();
  produced->record(producer);
  if (device_pointers_ok) {
    staged.ready = [produced] { produced->synchronize(); };
    return staged;
  }
  staged.buffer = torch::empty(tensor.sizes(), torch::TensorOptions(tensor.scalar_type()).pinned_memory(true));
  staged.on_host_copy = true;
  if (!copy_values) return staged;
  // The copy runs on a side stream behind the producer, so the caller's stream is not held up.
  auto copier = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, tensor.device().index());
  produced->block(copier);
  {
    c10::cuda::CUDAStreamGuard on_copier(copier);
    staged.buffer.copy_(tensor, /*non_blocking=*/true);
  }
  c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), copier);
  auto copied = std::make_shared<at::cuda::CUDAEvent>();
  copied->record(copier);
  staged.ready = [copied] { copied->synchronize(); };
#else
  (void)copy_values;
  (void)device_pointers_ok;
#endif
  return staged;
}

void FinishingWork::wait() {
  inner_->wait();
  if (!finish_) return;
  auto finish = std::move(finish_);
  finish_ = nullptr;
  finish();
}

std::function<void()> copy_back(std::vector<std::pair<Staged, torch::Tensor>> results) {
  bool any = false;
  for (const auto& [staged, target] : results) any = any || staged.on_host_copy;
  if (!any) return nullptr;
  return [results = std::move(results)]() mutable {
    for (auto& [staged, target] : results) {
      if (staged.on_host_copy) target.copy_(staged.buffer, /*non_blocking=*/true);
    }
  };
}

}  // namespace dpt::detail
