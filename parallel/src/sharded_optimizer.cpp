#include "dptrain/parallel/sharded_optimizer.h"

#include <cmath>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// The tensors of `state` when it is of a kind this file knows; false otherwise.
bool known_state_tensors(const torch::optim::OptimizerParamState& state, ParamStateTensors& out) {
  auto put = [&](const char* key, const torch::Tensor& t) {
    if (t.defined()) out.emplace(key, t);
  };
  if (auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(&state)) {
    put("exp_avg", adam->exp_avg());
    put("exp_avg_sq", adam->exp_avg_sq());
    put("max_exp_avg_sq", adam->max_exp_avg_sq());
    out.emplace("step", torch::tensor(adam->step(), torch::kInt64));
  } else if (auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(&state)) {
    put("exp_avg", adamw->exp_avg());
    put("exp_avg_sq", adamw->exp_avg_sq());
    put("max_exp_avg_sq", adamw->max_exp_avg_sq());
    out.emplace("step", torch::tensor(adamw->step(), torch::kInt64));
  } else if (auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(&state)) {
    put("momentum_buffer", sgd->momentum_buffer());
  } else {
    return false;
  }
  return true;
}

}  // namespace

ParamStateTensors param_state_tensors(const torch::optim::OptimizerParamState& state) {
  ParamStateTensors out;
  DPT_CHECK(known_state_tensors(state, out), UnsupportedError,
            "ShardedOptimizer: the state of this optimizer kind cannot be gathered (SGD, Adam and AdamW can)");
  return out;
}

std::unique_ptr<torch::optim::OptimizerParamState> make_param_state(const torch::optim::Optimizer& optimizer,
                                                                    const ParamStateTensors& tensors) {
  auto get = [&](const char* key) { return tensors.count(key) ? tensors.at(key) : torch::Tensor(); };
  const int64_t step = tensors.count("step") ? tensors.at("step").item<int64_t>() : 0;
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) {
    auto adam = std::make_unique<torch::optim::AdamParamState>();
    adam->step(step).exp_avg(get("exp_avg")).exp_avg_sq(get("exp_avg_sq")).max_exp_avg_sq(get("max_exp_avg_sq"));
    return adam;
  }
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) {
    auto adamw = std::make_unique<torch::optim::AdamWParamState>();
    adamw->step(step).exp_avg(get("exp_avg")).exp_avg_sq(get("exp_avg_sq")).max_exp_avg_sq(get("max_exp_avg_sq"));
    return adamw;
  }
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) {
    auto sgd = std::make_unique<torch::optim::SGDParamState>();
    sgd->momentum_buffer(get("momentum_buffer"));
    return sgd;
  }
  DPT_THROW(UnsupportedError, "ShardedOptimizer: cannot load state into this optimizer kind (SGD, Adam, AdamW)");
}

int64_t optimizer_state_bytes(const torch::optim::Optimizer& optimizer) {
  int64_t bytes = 0;
  for (const auto& [key, state] : optimizer.state()) {
    ParamStateTensors tensors;
    if (!known_state_tensors(*state, tensors)) continue;
    for (const auto& [name, t] : tensors) {
      if (name != "step") bytes += t.numel() * t.element_size();
    }
  }
  return bytes;
}

ShardedOptimizer::ShardedOptimizer(std::vector<torch::Tensor> parameters, CommunicatorPtr world, const Factory& make,
                                   Gradients gradients)
    : parameters_(std::move(parameters)), world_(std::move(world)), gradients_(gradients) {
  DPT_CHECK(!parameters_.empty(), InvalidArgumentError, "ShardedOptimizer: no parameters");
  const auto options = parameters_.front().options();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& p = parameters_[i];
    DPT_CHECK(p.scalar_type() == options.dtype().toScalarType() && p.device() == options.device(),
              InvalidArgumentError, "ShardedOptimizer: parameter ", i, " is ", p.scalar_type(), " on ", p.device(),
              ", parameter 0 is ", options.dtype(), " on ", options.device(), ": one dtype and device for all");
    total_ += p.numel();
  }
  const int64_t world_size = world_->size();
  shard_ = (total_ + world_size - 1) / world_size;
  const auto values = options.requires_grad(false);
  flat_grad_ = torch::zeros({shard_ * world_size}, values);
  flat_values_ = torch::zeros({shard_ * world_size}, values);
  // Note [Flat storage]: the parameters and their gradients become views of the two flat buffers,
  // so nothing is copied to flatten them, the all-gather writes the parameters in place, and the
  // memory is the unsharded model's (values + gradients) plus 1/world of the optimizer state,
  // instead of a second copy of each.
  {
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (auto& p : parameters_) {
      auto slot = flat_values_.narrow(0, offset, p.numel());
      slot.copy_(p.detach().reshape(-1));
      p.set_data(slot.view(p.sizes()));
      offset += p.numel();
    }
  }
  point_gradients_at_flat_buffer();
  shard_value_ = flat_values_.narrow(0, shard_begin(), shard_);
  shard_grad_ = torch::zeros({shard_}, values);
  optimizer_ = make({shard_value_});
  DPT_CHECK(optimizer_ != nullptr, InvalidArgumentError, "ShardedOptimizer: the factory made no optimizer");
}

void ShardedOptimizer::point_gradients_at_flat_buffer() {
  int64_t offset = 0;
  for (auto& p : parameters_) {
    auto slot = flat_grad_.narrow(0, offset, p.numel()).view(p.sizes());
    const auto& grad = p.grad();
    if (!grad.defined() || !grad.is_alias_of(flat_grad_)) {
      // Someone replaced it (set to None, or a new tensor): its values move into the slot.
      if (grad.defined()) slot.copy_(grad);
      else slot.zero_();
      p.mutable_grad() = slot;
    }
    offset += p.numel();
  }
}

void ShardedOptimizer::step() {
  torch::NoGradGuard no_grad;
  point_gradients_at_flat_buffer();  // usually nothing to do: autograd accumulates into the views
  if (gradients_ == Gradients::Local && world_->size() > 1) {
    world_->reduce_scatter(flat_grad_, shard_grad_, ReduceOp::Avg);
  } else {
    shard_grad_.copy_(flat_grad_.narrow(0, shard_begin(), shard_));
  }
  if (max_grad_norm_ > 0) clip_shard_gradient();
  shard_value_.mutable_grad() = shard_grad_;
  optimizer_->step();
  if (world_->size() > 1) {
    // The shard is part of the all-gather's output: sent from a copy (MPI forbids aliasing).
    torch::Tensor mine = shard_value_.clone();
    world_->allgather(mine, flat_values_);
  }
}

void ShardedOptimizer::clip_shard_gradient() {
  // The shards are disjoint (padding is zero), so the squares summed over ranks are the norm's.
  torch::Tensor squares = shard_grad_.to(torch::kFloat64).pow(2).sum().reshape({1});
  if (world_->size() > 1) world_->allreduce(squares, ReduceOp::Sum);
  grad_norm_ = std::sqrt(squares.item<double>());
  const double coefficient = max_grad_norm_ / (grad_norm_ + 1e-6);
  if (coefficient < 1.0) shard_grad_.mul_(coefficient);
}

void ShardedOptimizer::zero_grad() {
  flat_grad_.zero_();
  point_gradients_at_flat_buffer();
}

ParamStateTensors ShardedOptimizer::shard_state() const {
  auto found = optimizer_->state().find(shard_value_.unsafeGetTensorImpl());
  if (found == optimizer_->state().end()) return {};
  return param_state_tensors(*found->second);
}

ShardedOptimizer::State ShardedOptimizer::full_state() {
  torch::NoGradGuard no_grad;
  State state(parameters_.size());
  // Every rank stepped the same number of times, so every rank has the same keys.
  for (const auto& [key, shard] : shard_state()) {
    if (key == "step") {
      for (auto& entry : state) entry.emplace(key, shard.clone());
      continue;
    }
    torch::Tensor full = torch::empty({shard_ * world_->size()}, shard.options());
    if (world_->size() > 1) {
      world_->allgather(shard.contiguous(), full);
    } else {
      full.copy_(shard);
    }
    int64_t offset = 0;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      const auto& p = parameters_[i];
      state[i].emplace(key, full.narrow(0, offset, p.numel()).view(p.sizes()).clone());
      offset += p.numel();
    }
  }
  return state;
}

void ShardedOptimizer::load_full_state(const State& state) {
  DPT_CHECK(state.size() == parameters_.size(), InvalidArgumentError, "ShardedOptimizer: a state of ",
            state.size(), " parameters for ", parameters_.size());
  if (state.empty() || state.front().empty()) return;
  torch::NoGradGuard no_grad;
  ParamStateTensors shard;
  for (const auto& [key, first] : state.front()) {
    if (key == "step") {  // one count, the same for every parameter
      shard.emplace(key, first);
      continue;
    }
    torch::Tensor flat = torch::zeros({shard_ * world_->size()}, flat_values_.options());
    int64_t offset = 0;
    for (size_t i = 0; i < parameters_.size(); ++i) {
      auto found = state[i].find(key);
      DPT_CHECK(found != state[i].end() && found->second.numel() == parameters_[i].numel(), InvalidArgumentError,
                "ShardedOptimizer: parameter ", i, "'s state '", key, "' is missing or has ",
                found == state[i].end() ? 0 : found->second.numel(), " elements, the parameter ",
                parameters_[i].numel());
      flat.narrow(0, offset, parameters_[i].numel()).copy_(found->second.reshape(-1));
      offset += parameters_[i].numel();
    }
    shard.emplace(key, flat.narrow(0, shard_begin(), shard_).clone());
  }
  optimizer_->state()[shard_value_.unsafeGetTensorImpl()] = make_param_state(*optimizer_, shard);
}

int64_t ShardedOptimizer::state_bytes() const { return optimizer_state_bytes(*optimizer_); }

}  // namespace dpt
