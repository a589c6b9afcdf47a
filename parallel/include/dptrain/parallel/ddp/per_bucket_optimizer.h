// Stepping an optimizer one gradient bucket at a time: DistributedDataParallel::overlap_optimizer.
//
// Note [Optimizer per bucket]
// Without it, optimizer.step() starts once the last bucket's all-reduce is back: the step is pure
// critical path. With it, DDP's finalize waits for the buckets in order and steps each bucket's
// parameters as soon as that bucket is reduced and written to .grad, while the later buckets are
// still on the wire (PyTorch's open requests #67570, #80595; its private _register_fused_optim does
// the same from a comm hook's future). The last bucket (the first layers, whose gradients come at
// the very end of backward) is usually the one still reducing, so the step of every other bucket
// hides behind it; on a GPU the step's kernels of bucket b queue behind bucket b's reduction only.
//
// Sound for every optimizer whose update of a parameter reads only that parameter, its gradient,
// its own state and its group's options: libtorch's SGD (momentum, Nesterov, weight decay), Adam,
// AdamW, RMSprop, Adagrad, and dpt::ForeachSGD; their per-bucket steps equal one whole step bit
// for bit (tests/mpi/test_ddp_optimizer_overlap.cpp). Not sound, so refused or left to the caller:
// anything that needs the whole gradient first - LBFGS (refused), clipping by the global norm,
// fp16 loss scaling's finite check, skipping a step on a non-finite loss - and ZeRO, whose sharded
// optimizer steps after its own reduce-scatter.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <vector>

namespace dpt {

class PerBucketOptimizer {
 public:
  // `params`: DistributedDataParallel's parameter list (the indices passed to step() point into
  // it). Every parameter the optimizer holds must be one of them: it would never be stepped
  // otherwise (InvalidArgumentError naming its group). The optimizer must outlive this object.
  PerBucketOptimizer(torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> params);

  // optimizer.step() over params[i] for i in `indices` only. The optimizer steps what its param
  // groups list, so each group is narrowed to its share of `indices` for the call and restored
  // after; the state (keyed by the parameter) and the group's options are the optimizer's own.
  void step(const std::vector<size_t>& indices);

 private:
  size_t optimizer_param_count() const;

  torch::optim::Optimizer& optimizer_;
  std::vector<torch::Tensor> params_;
  std::vector<int> group_of_;  // per DDP parameter: its param group in the optimizer, -1 if none
  size_t param_count_ = 0;     // the optimizer's, when this was built: a later add_param_group is an error
};

}  // namespace dpt
