// ZeRO stage 1: each rank keeps the optimizer state of one shard of the parameters only.
//
//   dpt::DistributedDataParallel ddp(model, world);
//   dpt::ShardedOptimizer optimizer(ddp.parameters(), world, [](std::vector<torch::Tensor> shard) {
//     return std::make_unique<torch::optim::Adam>(shard, torch::optim::AdamOptions(1e-3));
//   });
//   { dpt::DistributedDataParallel::NoSyncGuard local(ddp);   // gradients stay local...
//     loss(ddp.forward(x), y).backward(); }
//   optimizer.step();   // ...reduce-scattered here: this rank's shard, averaged over ranks
//   optimizer.zero_grad();
//
// The parameters (one dtype, one device) are moved into one flat buffer (they become views of it,
// their gradients views of a second one: no copies, the model's own memory), cut into `world size`
// contiguous shards of equal length (the last padded), so rank r owns elements
// [r * shard, (r + 1) * shard): balanced by bytes and the same on every rank. step():
//   1. the flat gradients are reduce-scattered with ReduceOp::Avg: rank r receives the
//      average over ranks of its shard only (with Gradients::AlreadyAveraged, e.g. after a DDP
//      backward outside no_sync, the shard is sliced from the local gradients instead);
//   2. the optimizer made by `make` for one flat tensor (this rank's shard of the parameter values)
//      steps it: its state (momentum, Adam's moments) exists for this shard only, 1/world of it;
//   3. the updated shards are all-gathered into the flat buffer, i.e. into the parameters.
// Elementwise optimizers (SGD with momentum, Adam, AdamW, weight decay included) give the same
// values as the unsharded optimizer on the averaged gradients; global-norm clipping is
// set_max_grad_norm (the gradients are whole on no rank). Not yet: overlap of the reduce-scatter with
// backward through DDP's buckets, freeing gradient memory (ZeRO-2), checkpoints of the sharded
// state, the Trainer and `dptrain train --zero` (issue 24; docs/ddp.md).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <memory>
#include <vector>

#include "dptrain/parallel/communicator.h"

namespace dpt {

// One parameter's optimizer state as named tensors - "momentum_buffer" (SGD); "exp_avg",
// "exp_avg_sq", "max_exp_avg_sq" (amsgrad) and "step" (a 0-dim int64 tensor) for Adam and AdamW -
// and back. The one place that knows libtorch's per-optimizer state types (SGD, Adam, AdamW; any
// other kind is an UnsupportedError).
using ParamStateTensors = std::map<std::string, torch::Tensor>;
ParamStateTensors param_state_tensors(const torch::optim::OptimizerParamState& state);
// A state object of `optimizer`'s kind holding `tensors` (missing keys: undefined, step 0).
std::unique_ptr<torch::optim::OptimizerParamState> make_param_state(const torch::optim::Optimizer& optimizer,
                                                                    const ParamStateTensors& tensors);
// Bytes of the state tensors (not "step") `optimizer` holds; states of other kinds count 0.
int64_t optimizer_state_bytes(const torch::optim::Optimizer& optimizer);

class ShardedOptimizer {
 public:
  using Factory = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor> shard)>;
  enum class Gradients { Local, AlreadyAveraged };

  // Collective-free; every rank must pass the same parameters in the same order.
  ShardedOptimizer(std::vector<torch::Tensor> parameters, CommunicatorPtr world, const Factory& make,
                   Gradients gradients = Gradients::Local);

  void step();
  // Global-norm gradient clipping inside step(), between the reduce-scatter and the optimizer: the
  // norm of the whole averaged gradient from every rank's shard (one scalar all-reduce), then each
  // shard scaled by max / (norm + 1e-6) when that is below 1 (torch.nn.utils.clip_grad_norm_'s
  // rule). 0: off. grad_norm(): the norm of the last step (0 when clipping is off).
  void set_max_grad_norm(double max_norm) { max_grad_norm_ = max_norm; }
  double grad_norm() const { return grad_norm_; }
  // Zeroes the gradients in place: they stay views of the flat gradient buffer (a gradient set to
  // None or replaced elsewhere is pointed back at it, values kept, at the next step or zero_grad).
  void zero_grad();

  // The optimizer of this rank's shard (learning rate: its param_groups; state: 1/world of it).
  torch::optim::Optimizer& shard_optimizer() { return *optimizer_; }
  // Elements of the flat parameter vector this rank owns: [begin, end) (end may pass the real
  // parameter count on the last rank: padding).
  int64_t shard_begin() const { return shard_ * world_->rank(); }
  int64_t shard_size() const { return shard_; }
  int64_t total_elements() const { return total_; }
  // Bytes of optimizer state tensors on this rank.
  int64_t state_bytes() const;

  // Per parameter, the state an unsharded optimizer would hold, in the parameter's shape, so that
  // a checkpoint of it does not depend on the world size (collective: all-gathers the shards).
  // Keys: "momentum_buffer" (SGD with momentum); "exp_avg", "exp_avg_sq", "max_exp_avg_sq"
  // (amsgrad) and "step" (a 0-dim int64 tensor) for Adam and AdamW. Empty before the first step.
  using State = std::vector<ParamStateTensors>;
  State full_state();
  // The inverse, at any world size: this rank keeps its shard of each tensor.
  void load_full_state(const State& state);

 private:
  void point_gradients_at_flat_buffer();
  void clip_shard_gradient();
  // This rank's state tensors by key (flat, shard_ elements), and "step" when the optimizer has one.
  ParamStateTensors shard_state() const;

  std::vector<torch::Tensor> parameters_;
  CommunicatorPtr world_;
  Gradients gradients_;
  double max_grad_norm_ = 0.0;
  double grad_norm_ = 0.0;
  int64_t total_ = 0;
  int64_t shard_ = 0;
  torch::Tensor flat_grad_;    // world * shard elements (padded); the parameters' .grad are views of it
  torch::Tensor flat_values_;  // world * shard elements; the parameters are views of it
  torch::Tensor shard_value_;  // this rank's slice of flat_values_, stepped in place by optimizer_
  torch::Tensor shard_grad_;   // its averaged gradient
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
};

}  // namespace dpt
