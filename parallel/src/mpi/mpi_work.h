// CUDA tensors through a host-side MPI (private; MpiCommunicator). Nothing here blocks the
// caller's thread, which may be inside an autograd hook:
//  - At issue, stage() records an event on the caller's current stream (the tensor's producer).
//    Without a CUDA-aware MPI it also queues the device->host copy into pinned memory on a side
//    stream behind that event.
//  - The progress thread calls Staged::ready() before its MPI call: it waits (there, not on the
//    caller's thread) for the copy, or for the producer when MPI reads device memory itself.
//  - Work::wait() runs the finishing step once on the caller's thread: the host->device copy of
//    the result (non-blocking on the caller's current stream, so work queued there afterwards
//    sees it) and, for ReduceOp::Avg on device memory, the division.
// For CPU tensors stage() hands the tensor through untouched and ready() returns at once.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "dptrain/parallel/comm/work.h"

namespace dpt::detail {

struct Staged {
  torch::Tensor buffer;            // what MPI reads and writes: the tensor, or its pinned host copy
  std::function<void()> ready;     // blocks until `buffer` holds the tensor's values (progress thread)
  bool on_host_copy = false;       // buffer is a host copy: results must go back to the device
};

// `copy_values`: the collective reads the tensor (false for pure outputs: no copy is queued).
// `device_pointers_ok`: MPI is CUDA-aware, so a CUDA tensor is passed as it is.
Staged stage(const torch::Tensor& tensor, bool copy_values, bool device_pointers_ok);

// A Work that runs `finish` once, on the first wait() after `inner` completed.
class FinishingWork final : public Work {
 public:
  FinishingWork(WorkPtr inner, std::function<void()> finish) : inner_(std::move(inner)), finish_(std::move(finish)) {}
  void wait() override;
  bool is_completed() override { return inner_->is_completed(); }

 private:
  WorkPtr inner_;
  std::function<void()> finish_;
};

// Copies each staged host result back into its device tensor on the caller's current stream
// (non-blocking from pinned memory); empty when nothing was staged.
std::function<void()> copy_back(std::vector<std::pair<Staged, torch::Tensor>> results);

}  // namespace dpt::detail
