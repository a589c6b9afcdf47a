// Private state of DistributedDataParallel, shared by its .cpp files (wrapper and Join). Not
// installed: it lives beside them in parallel/src/ddp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dptrain/parallel/ddp/autograd_hooks.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "dptrain/parallel/ddp/join.h"
#include "dptrain/parallel/ddp/per_bucket_optimizer.h"
#include "dptrain/parallel/ddp/reducer.h"

namespace dpt {

struct DistributedDataParallel::Impl {
  Impl(Model model, CommunicatorPtr comm, DdpOptions options);
  ~Impl();

  void on_grad_ready(size_t index);  // autograd hook
  void watch_output(const torch::Tensor& output);  // hook on the forward's output (see .cpp)
  void watch_outputs(const c10::IValue& output);
  void finalize();                   // end-of-backward callback
  void pre_forward();
  void post_forward();
  double divisor() const;
  // Broadcasts `tensors` from `root`, one flat buffer per (device, dtype).
  void broadcast_coalesced(const std::vector<torch::Tensor>& tensors, int root, const std::string& what);

  // Join protocol (see join.h): code 0 = finished, 1 = training and syncing, 2 = training under
  // no_sync. Every rank learns every code; updates active_count and the authoritative rank (the
  // lowest rank still training), which buffers and the bucket order are broadcast from.
  std::vector<int> join_round(int code);
  static std::string finished_ranks_text(const std::vector<int>& codes);
  void shadow_iteration(const std::vector<int>& codes);
  void sync_final_model();

  Model model;
  CommunicatorPtr comm;
  DdpOptions options;
  DebugLevel debug = DebugLevel::Off;
  std::vector<std::string> param_names;
  std::vector<torch::Tensor> params;
  NamedTensorList buffers;
  std::unique_ptr<Reducer> reducer;
  std::unique_ptr<PerBucketOptimizer> overlapped_optimizer;  // overlap_optimizer(); null: off
  std::vector<std::unique_ptr<GradReadyHook>> hooks;
  bool require_backward_grad_sync = true;
  std::string gradients_reduced_by;  // hand_gradient_reduction_to(); empty: this DDP reduces them
  bool syncs_gradients() const { return require_backward_grad_sync && gradients_reduced_by.empty(); }

  bool join_active = false;
  JoinOptions join_options;
  int active_count = 0;
  int authoritative_rank = 0;
  int last_authoritative_rank = 0;

  TraceRecorder trace;
  IterationStats stats;
  double forward_start_us = 0;
  double forward_end_us = 0;
};

}  // namespace dpt
