// ZeRO stages 1 and 2: each rank keeps the optimizer state (and, at stage 2, the gradient) of one
// shard of the parameters only - PyTorch's ZeroRedundancyOptimizer and FSDP's SHARD_GRAD_OP, and
// DeepSpeed's ZeRO-1/2, for libtorch.
//
//   dpt::DistributedDataParallel ddp(model, world);       // forward, buffers, rank 0's weights
//   dpt::ShardedOptimizer optimizer(ddp, [](std::vector<torch::Tensor> shard) {
//     return std::make_unique<torch::optim::Adam>(shard, torch::optim::AdamOptions(1e-3));
//   }, dpt::ShardingOptions().stage(2));
//   loss(ddp.forward(x), y).backward();   // gradients reduce-scattered while backward runs
//   optimizer.step();                     // this rank's shard stepped, then all shards all-gathered
//   optimizer.zero_grad();
//
// Layout (parallel/src/zero/shard_layout.h): the parameters are grouped into units with DDP's
// bucket rule (reverse registration order, ~1 MB first, then ~25 MB) and moved into one flat
// buffer, unit after unit, each padded to a multiple of the world size; the parameters become views
// of it (no copy of the model). Rank r owns the r-th of the world-size equal contiguous pieces of
// every unit: balanced by bytes, the same on every rank, and each unit reduce-scattered on its own.
// A step:
//   1. during backward, each unit's gradients are reduce-scattered (ReduceOp::Avg) as soon as
//      backward has produced them (Note [Reduce-scatter during backward], gradient_shards.h): rank r
//      receives the average over ranks of its pieces only;
//   2. step() waits for them, optionally unscales (AMP) and clips by the global norm (one scalar
//      all-reduce over the shards), and the optimizer made by `make` steps this rank's pieces (one
//      tensor per unit): its state (momentum, Adam's moments) exists for 1/world of the parameters;
//   3. the updated pieces are all-gathered into the flat buffer, i.e. into every rank's parameters.
// Stage 1 keeps the whole gradient (the parameters' .grad are views of a second flat buffer, as with
// plain DDP); stage 2 releases each unit's .grad once it has gone out, keeping only the shard's
// gradient between steps. Elementwise optimizers (SGD with momentum, Adam, AdamW, weight decay
// included) give the values of the unsharded optimizer on the averaged gradients.
//
// Gradient accumulation: inside a NoSyncGuard backward passes only accumulate .grad locally; the
// next backward outside one (or step()) reduces the sum. Join: a rank out of batches cannot shadow
// the optimizer's collectives; Join on a DDP handed to a ShardedOptimizer must throw on early
// termination (JoinOptions().throw_on_early_termination(true)), or it is an UnsupportedError.
#pragma once

#include <torch/arg.h>
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/zero/optimizer_param_state.h"

namespace dpt {

class DistributedDataParallel;

namespace zero {
struct ShardLayout;
class GradientShards;
}  // namespace zero

struct ShardingOptions {
  // 1: optimizer state sharded; 2: the gradient too.
  TORCH_ARG(int, stage) = 1;
  // Unit sizes: what one reduce-scatter carries (as DDP's bucket_cap_mb / first_bucket_cap_mb).
  TORCH_ARG(double, unit_cap_mb) = 25.0;
  TORCH_ARG(double, first_unit_cap_mb) = 1.0;
  // Stage 1 only: the gradients are the average over ranks already (a DDP that all-reduces them),
  // so step() takes this rank's pieces of them instead of reduce-scattering.
  TORCH_ARG(bool, gradients_already_averaged) = false;
};

class ShardedOptimizer {
 public:
  using Factory = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor> shard)>;

  // Collective-free; every rank must pass the same parameters (one dtype and device, all requiring
  // grad) in the same order, holding the same values.
  ShardedOptimizer(std::vector<torch::Tensor> parameters, CommunicatorPtr world, const Factory& make,
                   ShardingOptions options = {});
  // On a DDP's parameters and communicator; the DDP stops reducing gradients (this does it).
  ShardedOptimizer(DistributedDataParallel& ddp, const Factory& make, ShardingOptions options = {});
  ~ShardedOptimizer();

  // Steps this rank's shard and all-gathers the result. `grad_scale`: the gradients are divided by it
  // first (AMP's loss scale), and a non-finite gradient on any rank skips the update on every rank
  // (returns false; the same answer everywhere). Returns true when the parameters were updated.
  bool step(double grad_scale = 1.0);
  // Global-norm gradient clipping inside step(), after the reduce-scatter: the norm of the whole
  // averaged gradient from every rank's shard, each shard scaled by max / (norm + 1e-6) when that is
  // below 1 (torch.nn.utils.clip_grad_norm_'s rule). 0: off. grad_norm(): the last step's norm
  // (0 when neither clipping nor a grad_scale asked for it).
  void set_max_grad_norm(double max_norm) { max_grad_norm_ = max_norm; }
  double grad_norm() const { return grad_norm_; }
  // Stage 1: zeroes the gradients in place (they stay views of the flat gradient buffer; a gradient
  // set to None or replaced elsewhere is pointed back at it, values kept). Stage 2: releases them.
  void zero_grad();

  class NoSyncGuard {
   public:
    explicit NoSyncGuard(ShardedOptimizer& optimizer);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    ShardedOptimizer* optimizer_;
    bool previous_;
  };
  // For loops that cannot be sure their backward reached a parameter of this rank: call after each
  // backward outside no_sync; reduces now when it did not (a no-op otherwise), so the other ranks are
  // not left waiting (as DistributedDataParallel::finish_backward).
  void finish_backward();

  int stage() const { return options_.stage(); }
  // The optimizer of this rank's pieces (learning rate: its param_groups; state: 1/world of it).
  torch::optim::Optimizer& shard_optimizer() { return *optimizer_; }
  int64_t shard_size() const;      // elements this rank owns (padding included)
  int64_t total_elements() const;  // elements of all parameters
  int64_t units() const;
  int64_t state_bytes() const;     // optimizer state tensors on this rank
  int64_t gradient_bytes() const;  // gradient memory kept between steps on this rank
  // Seconds the last backward waited for its reduce-scatters after computing (exposed communication).
  double last_exposed_comm_s() const;

  // Per parameter, the state an unsharded optimizer would hold, in the parameter's shape, so that a
  // checkpoint of it does not depend on the world size (collective: all-gathers the pieces). Keys as
  // param_state_tensors. Empty maps before the first step.
  using State = std::vector<ParamStateTensors>;
  State full_state();
  // The inverse, at any world size: this rank keeps its pieces of each tensor.
  void load_full_state(const State& state);

 private:
  ParamStateTensors piece_state(size_t unit) const;
  bool check_and_clip(bool check_finite);

  std::vector<torch::Tensor> parameters_;
  CommunicatorPtr world_;
  ShardingOptions options_;
  double max_grad_norm_ = 0.0;
  double grad_norm_ = 0.0;
  std::unique_ptr<zero::ShardLayout> layout_;
  torch::Tensor flat_values_;                // the parameters are views of it
  std::vector<torch::Tensor> piece_values_;  // this rank's piece of each unit, stepped by optimizer_
  std::unique_ptr<zero::GradientShards> gradients_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace dpt
