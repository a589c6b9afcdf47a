// The gradient reducer of DistributedDataParallel: buckets, their reductions, and the per-iteration
// state machine. It knows nothing about autograd: the wrapper calls mark_grad_ready(i) from its
// autograd hooks and finalize_backward() from the end-of-backward callback, so the reducer can be
// driven (and tested) by hand.
//
// One synchronized iteration:
//   prepare_for_backward(sync=true, divisor)   end of DDP::forward
//   mark_grad_ready(i) ...                      .grad of parameter i written; copied into its
//                                               bucket; a bucket whose gradients are all ready,
//                                               and all buckets before it, are handed to the comm
//                                               hook (async) - backward goes on meanwhile
//   finalize_backward()                         parameters that got no gradient are handled (see
//                                               find_unused_parameters), every bucket is waited
//                                               for, the averaged gradients are written to .grad
// Buckets are launched strictly in bucket order, so every rank issues the same collectives in the
// same order whatever order its gradients arrive in.
//
// Note [Bucket rebuild]: the first synchronized backward records the order in which gradients
// became ready. Before the next forward, rebuild_buckets(root) broadcasts root's order and every
// rank regroups the parameters in it - the same assignment everywhere - once per training run.
#pragma once

#include <torch/torch.h>

#include <mutex>
#include <string>
#include <vector>

#include "dptrain/parallel/bucket.h"
#include "dptrain/parallel/comm_hooks.h"
#include "dptrain/parallel/communicator.h"
#include "dptrain/parallel/ddp_stats.h"

namespace dpt {

struct ReducerOptions {
  size_t bucket_cap_bytes = 25u << 20;
  size_t first_bucket_cap_bytes = 1u << 20;
  bool find_unused_parameters = false;
  bool gradient_as_bucket_view = false;
  CommHook comm_hook;  // empty: comm_hooks::allreduce_average
  DebugLevel debug = DebugLevel::Off;
};

class Reducer {
 public:
  Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names, CommunicatorPtr comm,
          ReducerOptions options);

  // Starts an iteration. sync=false (no_sync): gradients only accumulate locally in .grad.
  void prepare_for_backward(bool sync, double divisor);
  // Gradient of parameter `index` has been accumulated. Returns true for the first ready gradient
  // of a synchronized backward: the caller then queues finalize_backward() on the backward pass.
  bool mark_grad_ready(size_t index);
  // End of backward; throws ModelError naming parameters without gradient when
  // find_unused_parameters is off (after matching the other ranks' collectives).
  void finalize_backward();
  // join(): this rank has no batch; runs the same collectives as a synchronized backward with
  // zero gradients, so the ranks still training do not wait forever. Leaves .grad untouched.
  void run_shadow_backward(double divisor);

  bool rebuild_pending() const { return rebuild_pending_; }
  void rebuild_buckets(int root);  // collective; see Note [Bucket rebuild]

  void set_comm_hook(CommHook hook);
  void set_trace_recorder(TraceRecorder recorder) { trace_ = std::move(recorder); }

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  std::string bucket_layout() const;  // one line per bucket (for INFO logs and errors)
  int64_t synced_iterations() const { return synced_iterations_; }
  // Timings of the last finalize_backward (seconds): when the end-of-backward callback started,
  // and how long it waited for the buckets.
  double last_backward_end_us() const { return last_backward_end_us_; }
  double last_exposed_comm_s() const { return last_exposed_comm_s_; }

 private:
  void build_buckets(const std::vector<size_t>& order);
  void copy_grad_to_bucket(size_t index);
  void mark_ready_locked(size_t index);
  void launch_ready_buckets();
  BucketFuture run_hook(size_t bucket_index, torch::Tensor contents);
  torch::Tensor used_map_reduction_start();
  void wait_and_write_back(const torch::Tensor& global_used);
  void reset_iteration();

  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  CommunicatorPtr comm_;
  ReducerOptions options_;
  TraceRecorder trace_;

  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> locate_;  // parameter -> (bucket, position in bucket)

  std::mutex mutex_;
  bool expect_hooks_ = false;
  bool sync_ = false;
  bool callback_queued_ = false;
  double divisor_ = 1;
  size_t next_bucket_ = 0;
  std::vector<char> ready_;          // this backward
  std::vector<char> locally_used_;   // since the last synchronized backward (no_sync included)
  WorkPtr used_map_work_;
  torch::Tensor used_map_;

  std::vector<size_t> ready_order_;  // of the first synchronized backward
  bool record_order_ = true;
  bool rebuild_pending_ = false;
  int64_t synced_iterations_ = 0;
  double last_backward_end_us_ = 0;
  double last_exposed_comm_s_ = 0;
};

}  // namespace dpt
