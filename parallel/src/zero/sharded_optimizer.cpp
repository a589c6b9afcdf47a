#include "dptrain/parallel/zero/sharded_optimizer.h"

#include <cmath>

#include "dptrain/core/error.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "zero/gradient_shards.h"
#include "zero/shard_layout.h"

namespace dpt {
namespace {

size_t megabytes_to_bytes(double mb) { return std::max<size_t>(1, static_cast<size_t>(mb * 1024.0 * 1024.0)); }

}  // namespace

ShardedOptimizer::ShardedOptimizer(std::vector<torch::Tensor> parameters, CommunicatorPtr world, const Factory& make,
                                   ShardingOptions options)
    : parameters_(std::move(parameters)), world_(std::move(world)), options_(options) {
  DPT_CHECK(world_, InvalidArgumentError, "ShardedOptimizer: no communicator");
  DPT_CHECK(!parameters_.empty(), InvalidArgumentError, "ShardedOptimizer: no parameters");
  DPT_CHECK(options_.stage() == 1 || options_.stage() == 2, InvalidArgumentError, "ShardedOptimizer: stage ",
            options_.stage(), " (1: optimizer state sharded, 2: gradients too)");
  DPT_CHECK(!options_.gradients_already_averaged() || options_.stage() == 1, InvalidArgumentError,
            "ShardedOptimizer: gradients_already_averaged keeps whole gradients; it is for stage 1 only");
  DPT_CHECK(options_.unit_cap_mb() > 0 && options_.first_unit_cap_mb() > 0, InvalidArgumentError,
            "ShardedOptimizer: unit caps must be > 0 MB");
  const auto first = parameters_.front().options();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& p = parameters_[i];
    DPT_CHECK(p.scalar_type() == first.dtype().toScalarType() && p.device() == first.device(), InvalidArgumentError,
              "ShardedOptimizer: parameter ", i, " is ", p.scalar_type(), " on ", p.device(), ", parameter 0 is ",
              first.dtype(), " on ", first.device(), ": one dtype and device for all");
    DPT_CHECK(p.requires_grad() && p.is_leaf(), InvalidArgumentError, "ShardedOptimizer: parameter ", i,
              " does not require grad (pass only trained parameters)");
  }
  layout_ = std::make_unique<zero::ShardLayout>(parameters_, world_->size(),
                                                megabytes_to_bytes(options_.first_unit_cap_mb()),
                                                megabytes_to_bytes(options_.unit_cap_mb()));
  // Note [Flat storage]: the parameters become views of one flat buffer, so flattening copies
  // nothing after this, the all-gather writes the parameters in place, and the memory is the
  // model's own plus 1/world of the optimizer state (and, at stage 2, of the gradient).
  // Uninitialised (its pages not yet resident) and filled parameter by parameter, each parameter's
  // old storage released as it moves: the model is not held twice while it moves (peak RSS).
  flat_values_ = torch::empty({layout_->flat_elements}, first.requires_grad(false));
  {
    torch::NoGradGuard no_grad;
    for (const auto& unit : layout_->units) {
      int64_t used = 0;
      for (size_t index : unit.params) used += parameters_[index].numel();
      flat_values_.narrow(0, unit.offset + used, unit.piece * world_->size() - used).zero_();  // padding
    }
    for (size_t i = 0; i < parameters_.size(); ++i) {
      auto slot = layout_->param_of_flat(flat_values_, i, parameters_[i]);
      slot.copy_(parameters_[i].detach());
      parameters_[i].set_data(slot);
    }
  }
  const bool reduce = world_->size() > 1 && !options_.gradients_already_averaged();
  gradients_ = std::make_unique<zero::GradientShards>(parameters_, *layout_, world_, options_.stage(), reduce);
  for (size_t u = 0; u < layout_->units.size(); ++u) {
    piece_values_.push_back(layout_->piece_of_flat(flat_values_, u, world_->rank()));
    piece_values_.back().mutable_grad() = layout_->piece_of_shard(gradients_->shard_grad(), u);
  }
  optimizer_ = make(piece_values_);
  DPT_CHECK(optimizer_ != nullptr, InvalidArgumentError, "ShardedOptimizer: the factory made no optimizer");
}

ShardedOptimizer::ShardedOptimizer(DistributedDataParallel& ddp, const Factory& make, ShardingOptions options)
    : ShardedOptimizer(ddp.parameters(), ddp.communicator(), make, options) {
  if (!options_.gradients_already_averaged()) ddp.hand_gradient_reduction_to("a ShardedOptimizer");
}

ShardedOptimizer::~ShardedOptimizer() = default;

bool ShardedOptimizer::step(double grad_scale) {
  DPT_CHECK(grad_scale > 0 && std::isfinite(grad_scale), InvalidArgumentError,
            "ShardedOptimizer::step: grad_scale must be finite and > 0, got ", grad_scale);
  torch::NoGradGuard no_grad;
  gradients_->complete();
  if (grad_scale != 1.0) gradients_->shard_grad().div_(grad_scale);
  const bool finite = check_and_clip(grad_scale != 1.0);
  if (!finite) return false;
  optimizer_->step();
  if (world_->size() > 1) {
    // Each piece is part of its all-gather's output: sent from a copy (MPI forbids aliasing).
    std::vector<torch::Tensor> sent, received;
    std::vector<WorkPtr> works;
    for (size_t u = 0; u < piece_values_.size(); ++u) {
      sent.push_back(piece_values_[u].clone());
      received.push_back(layout_->unit_of_flat(flat_values_, u));
      works.push_back(world_->allgather_async(sent.back(), received.back()));
    }
    for (auto& work : works) work->wait();
  }
  return true;
}

// The squares of the disjoint shards (padding is zero) summed over ranks are the whole gradient's:
// one scalar all-reduce gives the norm for clipping and, when it is not finite, the verdict that some
// rank's gradient holds an Inf or NaN.
bool ShardedOptimizer::check_and_clip(bool check_finite) {
  grad_norm_ = 0.0;
  if (max_grad_norm_ <= 0 && !check_finite) return true;
  torch::Tensor& shard_grad = gradients_->shard_grad();
  torch::Tensor squares = shard_grad.to(torch::kFloat64).pow(2).sum().reshape({1});
  if (world_->size() > 1) world_->allreduce(squares, ReduceOp::Sum);
  grad_norm_ = std::sqrt(squares.item<double>());
  if (!std::isfinite(grad_norm_)) return false;
  if (max_grad_norm_ > 0) {
    const double coefficient = max_grad_norm_ / (grad_norm_ + 1e-6);
    if (coefficient < 1.0) shard_grad.mul_(coefficient);
  }
  return true;
}

void ShardedOptimizer::zero_grad() { gradients_->zero(); }
void ShardedOptimizer::finish_backward() { gradients_->finish_backward(); }

ShardedOptimizer::NoSyncGuard::NoSyncGuard(ShardedOptimizer& optimizer)
    : optimizer_(&optimizer), previous_(optimizer.gradients_->sync()) {
  optimizer_->gradients_->set_sync(false);
}
ShardedOptimizer::NoSyncGuard::~NoSyncGuard() { optimizer_->gradients_->set_sync(previous_); }

int64_t ShardedOptimizer::shard_size() const { return layout_->shard_elements; }
int64_t ShardedOptimizer::total_elements() const { return layout_->real_elements; }
int64_t ShardedOptimizer::units() const { return static_cast<int64_t>(layout_->units.size()); }
int64_t ShardedOptimizer::state_bytes() const { return optimizer_state_bytes(*optimizer_); }
int64_t ShardedOptimizer::gradient_bytes() const { return gradients_->held_bytes(); }
double ShardedOptimizer::last_exposed_comm_s() const { return gradients_->last_exposed_comm_s(); }

ParamStateTensors ShardedOptimizer::piece_state(size_t unit) const {
  auto found = optimizer_->state().find(piece_values_[unit].unsafeGetTensorImpl());
  if (found == optimizer_->state().end()) return {};
  return param_state_tensors(*found->second);
}

ShardedOptimizer::State ShardedOptimizer::full_state() {
  torch::NoGradGuard no_grad;
  State state(parameters_.size());
  std::vector<ParamStateTensors> pieces;
  for (size_t u = 0; u < piece_values_.size(); ++u) pieces.push_back(piece_state(u));
  // Every rank stepped every piece the same number of times, so every rank has the same keys.
  for (const auto& [key, first] : pieces.front()) {
    if (key == "step") {  // one count, the same for every parameter
      for (auto& entry : state) entry.emplace(key, first.clone());
      continue;
    }
    torch::Tensor full = torch::zeros({layout_->flat_elements}, first.options());
    std::vector<torch::Tensor> sent, received;
    std::vector<WorkPtr> works;
    for (size_t u = 0; u < pieces.size(); ++u) {
      DPT_ASSERT(pieces[u].count(key), "unit ", u, " has no optimizer state '", key, "'");
      received.push_back(layout_->unit_of_flat(full, u));
      if (world_->size() == 1) {
        received.back().copy_(pieces[u].at(key));
        continue;
      }
      sent.push_back(pieces[u].at(key).contiguous());
      works.push_back(world_->allgather_async(sent.back(), received.back()));
    }
    for (auto& work : works) work->wait();
    for (size_t i = 0; i < parameters_.size(); ++i) {
      state[i].emplace(key, layout_->param_of_flat(full, i, parameters_[i]).clone());
    }
  }
  return state;
}

void ShardedOptimizer::load_full_state(const State& state) {
  DPT_CHECK(state.size() == parameters_.size(), InvalidArgumentError, "ShardedOptimizer: a state of ",
            state.size(), " parameters for ", parameters_.size());
  if (state.empty() || state.front().empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<ParamStateTensors> pieces(piece_values_.size());
  for (const auto& [key, first] : state.front()) {
    if (key == "step") {
      for (auto& piece : pieces) piece.emplace(key, first);
      continue;
    }
    torch::Tensor flat = torch::zeros({layout_->flat_elements}, flat_values_.options());
    for (size_t i = 0; i < parameters_.size(); ++i) {
      auto found = state[i].find(key);
      DPT_CHECK(found != state[i].end() && found->second.numel() == parameters_[i].numel(), InvalidArgumentError,
                "ShardedOptimizer: parameter ", i, "'s state '", key, "' is missing or has ",
                found == state[i].end() ? 0 : found->second.numel(), " elements, the parameter ",
                parameters_[i].numel());
      layout_->param_of_flat(flat, i, parameters_[i]).copy_(found->second.reshape(parameters_[i].sizes()));
    }
    for (size_t u = 0; u < pieces.size(); ++u) {
      pieces[u].emplace(key, layout_->piece_of_flat(flat, u, world_->rank()).clone());
    }
  }
  for (size_t u = 0; u < pieces.size(); ++u) {
    optimizer_->state()[piece_values_[u].unsafeGetTensorImpl()] = make_param_state(*optimizer_, pieces[u]);
  }
}

}  // namespace dpt
