// The only place dptrain touches libtorch's autograd internals (grad accumulators, engine
// callbacks). A libtorch upgrade that changes them touches this header and autograd_hooks.cpp.
//
// DistributedDataParallel uses two things PyTorch's own DDP reducer uses:
//  - a post-hook on each parameter's AccumulateGrad node: it runs right after autograd has written
//    the parameter's .grad in a backward pass, which is when the gradient is "ready";
//  - a callback queued on the running backward pass that runs once the whole graph has been
//    processed (every .grad written): the end-of-backward point where buckets are waited for.
// Both work the same for C++ torch::nn parameters and TorchScript module parameters (leaf tensors
// with requires_grad); the hook runs on the thread that runs that part of the backward pass.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace torch::autograd {
struct Node;
}

namespace dpt {

// Calls `on_ready` each time autograd has accumulated a gradient into `param`. Removes the hook
// when destroyed. `param` must be a leaf tensor that requires grad.
class GradReadyHook {
 public:
  GradReadyHook(const torch::Tensor& param, std::function<void()> on_ready);
  ~GradReadyHook();
  GradReadyHook(const GradReadyHook&) = delete;
  GradReadyHook& operator=(const GradReadyHook&) = delete;

 private:
  // The tensor holds its accumulator only weakly: keeping it here makes every backward pass use
  // (and so call the hook of) this same node.
  std::shared_ptr<torch::autograd::Node> accumulator_;
  std::uintptr_t key_ = 0;
};

// Runs `callback` once the backward pass now running has finished. Call it only from inside a
// backward pass (e.g. from a GradReadyHook). An exception thrown by the callback comes out of
// the user's loss.backward().
void queue_end_of_backward_callback(std::function<void()> callback);

}  // namespace dpt
