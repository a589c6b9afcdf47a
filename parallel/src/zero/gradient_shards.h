// The gradient half of a ShardedOptimizer: brings each rank the average over ranks of the
// gradient of its shard (ZeRO stages 1 and 2). Private to sharded_optimizer.cpp.
//
// Note [Reduce-scatter during backward]: an autograd hook on every parameter counts, per unit of
// the ShardLayout, the gradients backward has produced; once a unit is complete - and every unit
// before it has gone - its reduce-scatter (ReduceOp::Avg, equal pieces) is started, so the
// communication runs while backward computes the earlier layers. Units go strictly in layout
// order, so every rank issues the same collectives in the same order whatever order its
// gradients arrive in. At the end of the backward pass (an engine callback) the units not yet
// started (parameters this backward did not reach) go too, and all are waited for: one "round".
// A backward that reaches no parameter of this rank has no hook to start its round; the owner calls
// finish_backward() after it (the Trainer does), or the round runs in complete() before the step.
//
// Stage 1: the parameters' .grad are views of one flat buffer (the whole gradient stays, as with
// plain DDP); the round's reduce-scatter writes this rank's pieces into the shard gradient.
// Stage 2: .grad are ordinary tensors; a unit's are copied into a staging buffer, released
// (.grad = undefined; a unit of one parameter of the right length is sent as it is), reduce-scattered,
// and the result written (first round) or added (later rounds) into the shard gradient, so
// between backward passes only the shard's gradient (1/world) is kept. At most
// kUnitsInFlight staging buffers exist at once.
//
// Sync off (no_sync, gradient accumulation): hooks do nothing; gradients accumulate in .grad and go
// with the next round (stage 2 then holds whole gradients until it, as FSDP's no_sync does).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "dptrain/parallel/ddp/autograd_hooks.h"
#include "dptrain/parallel/comm/communicator.h"
#include "shard_layout.h"

namespace dpt::zero {

class GradientShards {
 public:
  // `reduce`: false when the gradients are averaged already (or the world is one rank): complete()
  // then takes this rank's pieces of the local gradients, without hooks or collectives.
  GradientShards(std::vector<torch::Tensor> params, const ShardLayout& layout, CommunicatorPtr world, int stage,
                 bool reduce);
  ~GradientShards();
  GradientShards(const GradientShards&) = delete;
  GradientShards& operator=(const GradientShards&) = delete;

  // This rank's averaged gradient, shard_elements long (valid after complete()).
  torch::Tensor& shard_grad() { return shard_grad_; }
  void set_sync(bool on) { sync_ = on; }
  bool sync() const { return sync_; }
  void finish_backward();
  // Before the optimizer step: runs the round the last backward did not (see the Note).
  void complete();
  void zero();
  double last_exposed_comm_s() const { return last_exposed_comm_s_; }
  // Gradient memory kept between steps: the flat buffer (stage 1) and the shard gradient.
  int64_t held_bytes() const;

 private:
  struct InFlight {
    size_t unit;
    WorkPtr work;
    torch::Tensor staging;   // stage 2: the unit's gradients, sent
    torch::Tensor received;  // stage 2, a later round before the step: this rank's piece, to be added
  };
  static constexpr size_t kUnitsInFlight = 2;

  void on_grad_ready(size_t param);
  void open_round_locked();
  void end_round();  // launch what is left, wait for everything; the engine callback
  void run_round();  // a whole round outside backward
  void launch(size_t unit);
  void settle(InFlight& in_flight);
  void take_local_gradients();
  torch::Tensor take_unit_gradients(size_t unit);
  void point_at_flat(size_t unit);

  std::vector<torch::Tensor> params_;
  const ShardLayout& layout_;
  CommunicatorPtr world_;
  int stage_;
  bool reduce_;
  torch::Tensor flat_grad_;   // stage 1: the parameters' .grad are views of it
  torch::Tensor shard_grad_;
  std::vector<std::unique_ptr<GradReadyHook>> hooks_;
  std::atomic<bool> sync_{true};

  std::mutex mutex_;
  bool round_open_ = false;
  std::vector<char> ready_;       // per parameter, this round
  std::vector<size_t> pending_;   // per unit, gradients not yet produced this round
  std::vector<char> piece_filled_;  // stage 2, per unit: the shard gradient holds a round's result
  size_t next_unit_ = 0;
  std::deque<InFlight> in_flight_;
  int64_t rounds_ = 0;
  int64_t rounds_seen_by_finish_ = 0;
  int64_t rounds_seen_by_complete_ = 0;
  double last_exposed_comm_s_ = 0;
};

}  // namespace dpt::zero
