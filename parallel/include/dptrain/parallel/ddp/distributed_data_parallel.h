// dpt::DistributedDataParallel: PyTorch's DDP for dptrain. One process per rank; after
// loss.backward() returns, every rank's .grad holds the gradient averaged over all ranks, and the
// optimizer steps exactly as without DDP.
//
//   auto comm = runtime.world();                       // MPI or NCCL, see runtime.h
//   dpt::DistributedDataParallel ddp(dpt::Model(net), comm, dpt::DdpOptions().bucket_cap_mb(25));
//   torch::optim::SGD opt(ddp.parameters(), 0.1);
//   for (auto& [x, y] : my_shard) {
//     opt.zero_grad();
//     auto loss = torch::nn::functional::cross_entropy(ddp.forward(x), y);
//     loss.backward();                                 // buckets reduced while backward runs
//     opt.step();
//   }
//
// Construction checks that all ranks hold the same parameters and buffers (names, dtypes, shapes,
// order; a ModelError naming the first difference on every rank), then broadcasts them from rank
// 0. See docs/ddp.md for buckets, no_sync, find_unused_parameters, comm hooks, join and debugging.
#pragma once

#include <torch/arg.h>
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/core/model.h"
#include "dptrain/parallel/comm_hooks/comm_hooks.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/ddp/ddp_stats.h"

namespace dpt {

class Reducer;
class Join;

struct DdpOptions {
  // Gradient bucket size; buckets are reduced as soon as they fill during backward.
  TORCH_ARG(double, bucket_cap_mb) = 25.0;
  // The first bucket (last layers' gradients, ready first) is small so communication starts early.
  TORCH_ARG(double, first_bucket_cap_mb) = 1.0;
  // Choose bucket_cap_mb from this model and this wire at the bucket rebuild (after two
  // synchronized iterations, which use bucket_cap_mb): bucket_autotune.h. Every rank builds the
  // same buckets (rank 0 decides, under Join the authoritative rank).
  TORCH_ARG(bool, bucket_cap_auto) = false;
  // Parameters that get no gradient in an iteration are reduced as zeros (a parameter no rank used
  // keeps its .grad). Off: such a parameter is an error naming it.
  TORCH_ARG(bool, find_unused_parameters) = false;
  // Copy buffers (BatchNorm running statistics) from rank 0 before each forward with grad enabled.
  TORCH_ARG(bool, broadcast_buffers) = true;
  // .grad tensors become views into the buckets: no copy back after the reduction, and no second
  // gradient-sized buffer kept between steps. On by default (PyTorch's is off): see docs/ddp.md for
  // the one thing it changes - two parameters' .grad share one allocation.
  TORCH_ARG(bool, gradient_as_bucket_view) = true;
  // How buckets are reduced; empty: each gradient is divided by the world size as it is copied into
  // its bucket and the buckets are summed (PyTorch's default; comm_hooks::allreduce_average gives
  // the same result with a separate division pass).
  TORCH_ARG(CommHook, comm_hook);
  // Overrides DPTRAIN_DEBUG.
  TORCH_ARG(std::optional<DebugLevel>, debug) = std::nullopt;
};

class DistributedDataParallel {
 public:
  DistributedDataParallel(Model model, CommunicatorPtr comm, DdpOptions options = {});
  template <typename ModuleHolder, typename = typename ModuleHolder::ContainedType>
  DistributedDataParallel(ModuleHolder module, CommunicatorPtr comm, DdpOptions options = {})
      : DistributedDataParallel(Model(std::move(module)), std::move(comm), std::move(options)) {}
  DistributedDataParallel(torch::jit::Module module, CommunicatorPtr comm, DdpOptions options = {})
      : DistributedDataParallel(Model(std::move(module)), std::move(comm), std::move(options)) {}
  ~DistributedDataParallel();
  DistributedDataParallel(DistributedDataParallel&&) noexcept;
  DistributedDataParallel& operator=(DistributedDataParallel&&) noexcept;

  torch::Tensor forward(const torch::Tensor& input);
  c10::IValue forward(std::vector<c10::IValue> inputs);
  torch::Tensor operator()(const torch::Tensor& input) { return forward(input); }
  // Another method of a TorchScript model, run as forward is (buffers broadcast before, gradients
  // reduced in the backward of its result): e.g. a training_step(inputs, targets) returning the loss.
  c10::IValue call(const std::string& method, std::vector<c10::IValue> inputs);

  // Gradient accumulation: backward passes inside the guard's lifetime only accumulate .grad
  // locally; the first backward after it reduces the accumulated gradients.
  //   { auto guard = ddp.no_sync(); ddp.forward(x1) ... .backward(); }
  //   ddp.forward(x2) ... .backward();   // reduces grad(x1) + grad(x2)
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& ddp);
    ~NoSyncGuard();
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel* ddp_;
    bool previous_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

  // For training loops that cannot be sure the loss reached the model: after backward, if it
  // reached no parameter of this rank, reduces now (zero gradients), so the other ranks are not
  // left waiting for this rank's buckets. A no-op after a normal backward. (A backward that reaches
  // the forward's output starts the reduction by itself.)
  void finish_backward();

  // Gradients are reduced by another component (a dpt::ShardedOptimizer built on this DDP): from
  // now on backward passes leave them alone, as under no_sync (and DDP allocates no buckets), and
  // Join refuses to shadow iterations, whose collectives that component issues, unless it throws
  // on early termination instead. `by` names the component in errors. For the rest of this DDP's life.
  void hand_gradient_reduction_to(std::string by);

  // Before the first backward; see comm_hooks.h.
  void register_comm_hook(CommHook hook);
  // From now on every synchronized backward ends with `optimizer` stepped, one bucket at a time
  // as each bucket's reduction completes, hidden behind the buckets still on the wire (Note
  // [Optimizer per bucket], per_bucket_optimizer.h); the caller no longer calls step() after such
  // a backward (optimizer_stepped() says). No-sync backwards step nothing, as before. Not with
  // find_unused_parameters, nor with anything that needs the whole gradient before the step
  // (clipping by the global norm, fp16 loss scaling): UnsupportedError / the caller's to refuse.
  // The optimizer must outlive this DDP or the next call; nullptr turns it off.
  //   ddp.overlap_optimizer(&opt);
  //   opt.zero_grad(); loss(ddp.forward(x), y).backward();  // stepped: no opt.step()
  void overlap_optimizer(torch::optim::Optimizer* optimizer);
  // The last synchronized backward stepped the optimizer registered with overlap_optimizer.
  bool optimizer_stepped() const;
  // Forward, backward and each bucket's reduction as timed spans (e.g. for a Chrome trace).
  void set_trace_recorder(TraceRecorder recorder);

  Model& model();
  std::vector<torch::Tensor> parameters() const;
  const CommunicatorPtr& communicator() const;
  const Reducer& reducer() const;
  // Timings of the last synchronized iteration (see IterationStats).
  IterationStats last_iteration_stats() const;
  void train(bool on = true);
  void eval() { train(false); }

  struct Impl;  // private: parallel/src/ddp/ddp_impl.h

 private:
  friend class Join;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpt
