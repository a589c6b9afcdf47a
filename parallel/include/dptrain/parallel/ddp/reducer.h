// The gradient reducer of DistributedDataParallel: buckets, their reductions, and the per-iteration
// state machine. It knows nothing about autograd: the wrapper calls mark_grad_ready(i) from its
// autograd hooks and finalize_backward() from the end-of-backward callback, so the reducer can be
// driven (and tested) by hand.
//
// Note [Iteration state machine]: one Phase, changed only by the calls below (reducer.cpp holds
// every transition):
//
//   Idle --prepare(sync=false)--> Accumulating   no_sync forward: gradients stay in .grad
//   Idle --prepare(sync=true)---> Expecting      synchronized forward: waiting for backward
//   Expecting --backward_started() or the first mark_grad_ready()--> Reducing
//                                 the caller queues finalize_backward() on the backward pass
//   Reducing --mark_grad_ready(i)--> Reducing    gradient i copied into its bucket (pre-divided
//                                                by the divisor); a full bucket, and every full
//                                                bucket before it, goes to the comm hook (async)
//   Reducing --finalize_backward()--> Reduced    parameters without a gradient handled (zeros /
//                                                find_unused_parameters), every bucket waited for,
//                                                averaged gradients written to .grad (bucket by
//                                                bucket into on_bucket_reduced, when set)
//   Reduced --backward_started()--> error        a second backward through the same forward
//                                                (it would not be averaged over ranks)
//   Accumulating, Reduced --prepare()--> ...     the next forward
//   Idle, Reduced --run_shadow_backward()--> Reduced   join(): zero buckets for the other ranks
//   Expecting --finish_pending()--> Reduced      a backward that reached no parameter: its
//                                                collectives still run, so peers never wait
//
// Buckets are launched strictly in bucket order, so every rank issues the same collectives in the
// same order whatever order its gradients arrive in.
//
// Note [Nothing to reduce]: over a communicator of one rank, with no comm hook, the average is the
// gradient itself. Such an iteration (local_only()) copies nothing and launches nothing: the
// states above are kept (a second backward, a parameter without gradient and the first
// backward's order are still detected and recorded), but .grad stays where autograd put it and
// the buckets are never allocated. A comm hook keeps the full path even at world size 1: it may
// change the values (fp16 compression, PowerSGD), and a run at world size 1 must equal one at 2.
//
// Note [Bucket rebuild]: the first synchronized backward records the order in which gradients
// became ready. Before the next forward, rebuild_buckets(root) broadcasts root's order and every
// rank regroups the parameters in it - the same assignment everywhere - once per training run.
// With auto_bucket_cap the first synchronized backward is a warm-up and the second records the
// order and when each gradient was ready; the rebuild then measures the all-reduce's cost curve
// (every rank), root chooses the cap (bucket_autotune.h) and broadcasts it with the order.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/parallel/ddp/bucket.h"
#include "dptrain/parallel/ddp/bucket_autotune.h"
#include "dptrain/parallel/comm_hooks/comm_hooks.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/ddp/ddp_stats.h"

namespace dpt {

struct ReducerOptions {
  size_t bucket_cap_bytes = 25u << 20;
  size_t first_bucket_cap_bytes = 1u << 20;
  bool auto_bucket_cap = false;  // Note [Bucket rebuild]; bucket_cap_bytes until then, and the fallback
  bool find_unused_parameters = false;
  bool gradient_as_bucket_view = false;  // DistributedDataParallel passes its own default (on)
  CommHook comm_hook;  // empty: sum of gradients pre-divided by the divisor (PyTorch's default)
  DebugLevel debug = DebugLevel::Off;
};

class Reducer {
 public:
  enum class Phase { Idle, Accumulating, Expecting, Reducing, Reduced };

  Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names, CommunicatorPtr comm,
          ReducerOptions options);

  // Starts an iteration. sync=false (no_sync): gradients only accumulate locally in .grad.
  void prepare_for_backward(bool sync, double divisor);
  // A backward pass reached the forward's output. Returns true when the caller must queue
  // finalize_backward() on this backward pass; throws ModelError on a second backward through
  // an already reduced forward.
  bool backward_started();
  // Gradient of parameter `index` has been accumulated. Returns true when the caller must queue
  // finalize_backward() (the backward's first gradient, when backward_started() was not seen).
  bool mark_grad_ready(size_t index);
  // End of backward; throws ModelError naming parameters without gradient when
  // find_unused_parameters is off (after matching the other ranks' collectives).
  void finalize_backward();
  // After a backward: when it reached no parameter of this rank (phase still Expecting), runs the
  // reduction now, so the other ranks are not left waiting for this rank's buckets.
  void finish_pending();
  // join(): this rank has no batch; runs the same collectives as a synchronized backward with
  // zero gradients, so the ranks still training do not wait forever. Leaves .grad untouched.
  void run_shadow_backward(double divisor);

  Phase phase() const { return phase_; }
  bool rebuild_pending() const { return layout_ == Layout::RebuildPending; }
  void rebuild_buckets(int root);  // collective; see Note [Bucket rebuild]

  void set_comm_hook(CommHook hook);
  // Note [Optimizer per bucket] (per_bucket_optimizer.h): finalize calls it with each bucket's
  // parameter indices as soon as that bucket's averaged gradients are in .grad, in bucket order;
  // in an iteration that reduces nothing (local_only) once, with every parameter. Not with
  // find_unused_parameters: its write-back waits for the used-parameter map. Empty: off.
  using BucketReduced = std::function<void(const std::vector<size_t>& param_indices)>;
  void set_on_bucket_reduced(BucketReduced callback);
  // The last synchronized backward handed every parameter to on_bucket_reduced.
  bool handed_over_last_iteration() const { return handed_over_; }
  void set_trace_recorder(TraceRecorder recorder) { trace_ = std::move(recorder); }

  // This iteration reduces nothing (Note [Nothing to reduce]); decided by prepare_for_backward().
  bool local_only() const { return local_only_; }
  const std::vector<Bucket>& buckets() const { return buckets_; }
  const std::vector<torch::Tensor>& parameters() const { return params_; }
  std::string bucket_layout() const;  // one line per bucket (for INFO logs and errors)
  size_t bucket_cap_bytes() const { return options_.bucket_cap_bytes; }  // the chosen one, after an auto rebuild
  // On the rank that chose the cap (auto_bucket_cap), after the rebuild: the sweep it chose from.
  const std::optional<BucketCapChoice>& bucket_cap_choice() const { return bucket_cap_choice_; }
  int64_t synced_iterations() const { return synced_iterations_; }
  // Timings of the last finalize_backward (seconds): when the end-of-backward callback started,
  // and how long it waited for the buckets.
  double last_backward_end_us() const { return last_backward_end_us_; }
  double last_exposed_comm_s() const { return last_exposed_comm_s_; }

 private:
  // Where the bucket assignment is: recording the first backward's gradient order, waiting for
  // the rebuild before the next forward, or final.
  enum class Layout { Recording, RebuildPending, Final };

  void build_buckets(const std::vector<size_t>& order);
  void end_recording_iteration();  // after each synchronized backward: Recording -> RebuildPending
  bool timing_gradients() const;  // this backward records when each gradient is ready (auto cap)
  void record_ready_time(size_t index);
  size_t choose_cap(int root);  // collective; see Note [Bucket rebuild]
  void allocate_buckets();  // the contents of buckets that have none yet (see Bucket::contents)
  void copy_grad_to_bucket(size_t index);
  void mark_ready_locked(size_t index);
  void launch_ready_buckets();
  BucketFuture run_hook(size_t bucket_index, torch::Tensor contents);
  torch::Tensor used_map_reduction_start();
  void wait_for_bucket(size_t b);  // its reduction done, the result in bucket.contents
  void write_back(size_t param_index);  // the averaged gradient into .grad
  void wait_and_write_back(const torch::Tensor& global_used);
  void hand_over_bucket_by_bucket();
  void finalize_locked();
  void reset_buckets();
  bool predivides() const { return !options_.comm_hook; }

  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  CommunicatorPtr comm_;
  ReducerOptions options_;
  TraceRecorder trace_;
  BucketReduced on_bucket_reduced_;
  std::vector<size_t> all_indices_;  // 0 .. n-1, for on_bucket_reduced in a local-only iteration
  bool handed_over_ = false;

  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> locate_;  // parameter -> (bucket, position in bucket)

  std::mutex mutex_;
  Phase phase_ = Phase::Idle;
  Layout layout_ = Layout::Recording;
  double divisor_ = 1;
  bool local_only_ = false;
  size_t next_bucket_ = 0;
  std::vector<char> ready_;          // this backward
  std::vector<char> locally_used_;   // since the last synchronized backward (no_sync included)
  WorkPtr used_map_work_;

  std::vector<size_t> ready_order_;  // of the first synchronized backward (the second with an auto cap)
  int warmups_left_ = 0;             // synchronized backwards before the one recorded
  std::vector<double> ready_s_;      // when each gradient was ready, after backward_start_us_ (auto cap)
  double backward_start_us_ = 0;
  std::optional<BucketCapChoice> bucket_cap_choice_;
  int64_t synced_iterations_ = 0;
  double last_backward_end_us_ = 0;
  double last_exposed_comm_s_ = 0;
};

}  // namespace dpt
