// How the Trainer keeps the ranks' models in step: the one place that talks to the gradient
// synchroniser, so the loop reads the same with or without DistributedDataParallel.
//
//   GradientSync sync(model, world);            // DDP: same model checked, rank 0's weights everywhere
//   for each micro-batch m of a step:
//     GradientSync::Scope scope(sync, m == last);  // `with ddp.no_sync()` for m < last
//     loss(sync.forward(x), y).backward();      // DDP reduces buckets during the last backward
//   sync.finish();
//
// Contract: after finish() every rank's .grad of each parameter is the mean over ranks of the
// per-rank gradients accumulated since zero_grad(). With one rank there is no DDP and no
// communication at all.
//
// A compiled package (Model::is_exported) has no autograd for DDP to hook: compiled_step() runs
// its training step (gradients into .grad), and finish() averages the gradients in buckets of
// 25 MB, all in flight at once: they arrive together at the end of the step, so there is no
// backward left to overlap with. Its buffers are rank 0's at every step (DDP's broadcast_buffers).
#pragma once

#include <memory>

#include "dptrain/core/data/tensors.h"
#include "dptrain/core/model.h"
#include "dptrain/parallel/c10d/process_group.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "dptrain/parallel/comm_hooks/hierarchical_allreduce.h"
#include "dptrain/parallel/comm_hooks/powersgd.h"

namespace dpt {

class GradientSync {
 public:
  // How DDP's buckets are all-reduced: Hierarchical - through a dpt::HierarchicalAllreduce when the
  // job's host layout makes it differ from the flat all-reduce (several hosts, several ranks on
  // each); Auto - the same when the hosts' ranks are also placed round-robin (measured: with
  // contiguous placement the flat all-reduce is as fast or faster, docs/cluster.md).
  enum class Allreduce { Flat, Auto, Hierarchical };
  // What DDP sends in the gradients' place (a comm hook; comm_hooks.h, powersgd.h). Any but None
  // takes the place of the hierarchical all-reduce (the Trainer's validate() refuses it together
  // with Allreduce::Hierarchical).
  enum class Compression { None, Fp16, Bf16, PowerSgd };
  // `buckets`: DDP's bucket options (bucket_cap_mb, bucket_cap_auto); the rest is set here.
  GradientSync(Model model, CommunicatorPtr world, Allreduce allreduce = Allreduce::Flat,
               Compression compression = Compression::None, PowerSgdOptions powersgd = {},
               DdpOptions buckets = {});
  ~GradientSync();

  class Scope {
   public:
    Scope(GradientSync& sync, bool synchronize);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    std::unique_ptr<DistributedDataParallel::NoSyncGuard> no_sync_;
  };

  // The training forward pass (through DDP when distributed); a tuple's parts are forward's
  // arguments (forward(image, mask)).
  torch::Tensor forward(const torch::Tensor& input);
  torch::Tensor forward(const Tensors& inputs);
  // Another method of a TorchScript model in its place (training_step), through DDP likewise.
  c10::IValue call(const std::string& method, std::vector<c10::IValue> inputs);
  // A compiled package's training step on this rank's micro-batch (see above); returns the loss.
  torch::Tensor compiled_step(const torch::Tensor& inputs, const torch::Tensor& targets, double grad_scale);

  // --overlap-optimizer: DDP steps `optimizer` bucket by bucket inside each synchronized backward
  // (Note [Optimizer per bucket]); on one rank, where there is no DDP, nothing changes.
  void overlap_optimizer(torch::optim::Optimizer& optimizer);
  // The last synchronized backward stepped that optimizer: the caller must not step it again.
  bool optimizer_stepped() const { return ddp_ && ddp_->optimizer_stepped(); }
  // Completes the gradient all-reduce of the step (no-op on one rank).
  void finish();
  // Seconds the last synchronized backward waited for its buckets after the backward computation
  // (DDP's exposed communication); NaN on one rank, where nothing is communicated.
  double exposed_comm_s() const;
  // Copies rank 0's buffers (BatchNorm statistics) to every rank.
  void sync_buffers();
  // The DDP wrapping the model; null on one rank and for compiled packages.
  DistributedDataParallel* ddp() { return ddp_.get(); }

 private:
  bool distributed() const { return world_ && world_->size() > 1; }
  void average_gradients();
  void register_compression(Compression compression, const PowerSgdOptions& options);
  Model model_;
  CommunicatorPtr world_;
  std::unique_ptr<DistributedDataParallel> ddp_;
  std::shared_ptr<HierarchicalAllreduce> hierarchical_;
  std::shared_ptr<PowerSgd> powersgd_;
  size_t package_bucket_bytes_;  // a compiled package's gradients are averaged in buckets of this cap
  std::unique_ptr<C10dGroupRegistration> program_group_;  // a package that reduces its own gradients
};

}  // namespace dpt
