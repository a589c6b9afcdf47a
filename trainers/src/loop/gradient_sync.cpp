#include "loop/gradient_sync.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/parallel/ddp/bucket.h"
#include "dptrain/parallel/ddp/ddp_consistency.h"

// Note [Gradients reduced inside the program]
// A package exported with reduce_gradients=True holds, after each gradient of its compiled
// backward, PyTorch's functional all_reduce (average) of it and, before it returns, the wait: the
// reduction of a gradient runs while the backward computes the layers before it. The collectives
// look their c10d group up by name (the package's "dptrain.gradient_group"); GradientSync
// registers the world communicator under it, and then has nothing to average after the step.
// Every rank runs the same compiled program, so every rank issues the same collectives in the
// same order (checked at construction: the same parameters, and below, the same group name).

namespace dpt {

GradientSync::GradientSync(Model model, CommunicatorPtr world, Allreduce allreduce, Compression compression,
                           PowerSgdOptions powersgd, DdpOptions buckets)
    : model_(std::move(model)),
      world_(std::move(world)),
      package_bucket_bytes_(std::max<size_t>(static_cast<size_t>(buckets.bucket_cap_mb() * 1024 * 1024), 1)) {
  if (model_.is_exported() && !model_.exported().gradient_group().empty()) {
    // The program averages its gradients itself (Note [Gradients reduced inside the program]):
    // its collectives find this rank's communicator by the group's name, at world size 1 too.
    DPT_CHECK(world_ != nullptr, UnsupportedError, model_.exported().origin(),
              " all-reduces its gradients inside its program and needs a communicator (dpt::Runtime)");
    program_group_ = std::make_unique<C10dGroupRegistration>(model_.exported().gradient_group(), world_);
    DPT_LOG_INFO("{} all-reduces its gradients inside its compiled backward (c10d group '{}')",
                 model_.exported().origin(), model_.exported().gradient_group());
  }
  if (!distributed()) return;
  if (model_.is_exported()) {
    // What DDP's construction does: the same parameters on every rank (ModelError naming the
    // difference), then rank 0's values everywhere.
    std::vector<std::string> lines;
    for (const auto& [name, tensor] : model_.named_parameters()) lines.push_back(c10::str(name, " ", tensor.sizes(), " ", tensor.scalar_type()));
    lines.push_back("gradients all-reduced inside the program over group '" + model_.exported().gradient_group() + "'");
    check_same_on_all_ranks(*world_, lines, "compiled package parameters");
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : model_.named_parameters()) world_->broadcast(tensor, 0);
    sync_buffers();
    return;
  }
  // DDP checks that every rank holds the same architecture (ModelError naming the difference)
  // and broadcasts rank 0's parameters and buffers.
  ddp_ = std::make_unique<DistributedDataParallel>(model_, world_, std::move(buckets));
  if (compression != Compression::None) {
    register_compression(compression, powersgd);
    return;
  }
  if (allreduce == Allreduce::Flat) return;
  auto layered = std::make_shared<HierarchicalAllreduce>(world_);  // collective: every rank decides alike
  if (!layered->helps()) return;
  if (allreduce == Allreduce::Auto && layered->layout().contiguous) return;
  hierarchical_ = std::move(layered);
  ddp_->register_comm_hook(hierarchical_->comm_hook());
  DPT_LOG_INFO("gradients all-reduced hierarchically: {} hosts x {} ranks", hierarchical_->layout().hosts,
               hierarchical_->layout().local_size);
}

GradientSync::~GradientSync() = default;

void GradientSync::register_compression(Compression compression, const PowerSgdOptions& options) {
  switch (compression) {
    case Compression::None:
      return;
    case Compression::Fp16:
      ddp_->register_comm_hook(comm_hooks::fp16_compress);
      DPT_LOG_INFO("gradients sent as float16");
      return;
    case Compression::Bf16:
      ddp_->register_comm_hook(comm_hooks::bf16_compress);
      DPT_LOG_INFO("gradients sent as bfloat16");
      return;
    case Compression::PowerSgd:
      powersgd_ = std::make_shared<PowerSgd>(options);
      ddp_->register_comm_hook(powersgd_->comm_hook());
      DPT_LOG_INFO("gradients compressed with PowerSGD: rank {}, after {} exact step(s)", options.rank(),
                   options.start_iteration());
      return;
  }
}

GradientSync::Scope::Scope(GradientSync& sync, bool synchronize) {
  if (sync.ddp_ && !synchronize) no_sync_ = std::make_unique<DistributedDataParallel::NoSyncGuard>(*sync.ddp_);
}

GradientSync::Scope::~Scope() = default;

torch::Tensor GradientSync::forward(const torch::Tensor& input) {
  return ddp_ ? ddp_->forward(input) : model_.forward(input);
}

torch::Tensor GradientSync::forward(const Tensors& inputs) {
  if (!inputs.is_tuple()) return forward(inputs.parts().front());
  c10::IValue output = ddp_ ? ddp_->forward(inputs.arguments()) : model_.forward(inputs.arguments());
  DPT_CHECK(output.isTensor(), ModelError, "the model's forward returned a ", output.tagKind(),
            " for inputs ", inputs.shapes(), "; a loss needs one output tensor (or define training_step)");
  return output.toTensor();
}

c10::IValue GradientSync::call(const std::string& method, std::vector<c10::IValue> inputs) {
  return ddp_ ? ddp_->call(method, std::move(inputs)) : model_.run_method(method, std::move(inputs));
}

torch::Tensor GradientSync::compiled_step(const torch::Tensor& inputs, const torch::Tensor& targets, double grad_scale) {
  return model_.train_step(inputs, targets, grad_scale);
}

void GradientSync::overlap_optimizer(torch::optim::Optimizer& optimizer) {
  if (ddp_) ddp_->overlap_optimizer(&optimizer);
}

void GradientSync::finish() {
  // DDP reduced the gradients during the last backward; if that backward reached no parameter of
  // this rank, the reduction runs now so the other ranks are not left waiting for it.
  if (ddp_) ddp_->finish_backward();
  if (model_.is_exported() && distributed() && !program_group_) average_gradients();
  if (powersgd_ && powersgd_->iteration() == powersgd_->options().start_iteration() + 1) {
    DPT_LOG_INFO("PowerSGD: each step now sends 1/{:.1f} of the gradient elements", powersgd_->compression_ratio());
  }
}

void GradientSync::average_gradients() {
  // Every parameter has a gradient after a compiled step (one output each), so every rank builds
  // the same buckets, with DDP's assignment (one dtype and device per bucket).
  std::vector<torch::Tensor> grads;
  for (const auto& parameter : model_.parameters()) {
    if (parameter.grad().defined()) grads.push_back(parameter.grad());
  }
  std::vector<size_t> order(grads.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::vector<WorkPtr> works;
  for (const auto& indices : assign_buckets(grads, order, package_bucket_bytes_, package_bucket_bytes_)) {
    std::vector<torch::Tensor> bucket;
    for (size_t i : indices) bucket.push_back(grads[i]);
    works.push_back(world_->allreduce_coalesced_async(bucket, ReduceOp::Avg));
  }
  for (auto& work : works) work->wait();
}

double GradientSync::exposed_comm_s() const {
  return ddp_ ? ddp_->last_iteration_stats().exposed_comm_s : std::numeric_limits<double>::quiet_NaN();
}

void GradientSync::sync_buffers() {
  if (!distributed()) return;
  torch::NoGradGuard no_grad;
  for (auto& [name, buffer] : model_.named_buffers()) {
    auto value = buffer.contiguous();
    world_->broadcast(value, 0);
    if (!value.is_same(buffer)) buffer.copy_(value);
  }
}

}  // namespace dpt
