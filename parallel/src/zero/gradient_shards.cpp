#include "gradient_shards.h"

#include "dptrain/core/error.h"
#include "dptrain/parallel/ddp/ddp_stats.h"

namespace dpt::zero {

GradientShards::GradientShards(std::vector<torch::Tensor> params, const ShardLayout& layout, CommunicatorPtr world,
                               int stage, bool reduce)
    : params_(std::move(params)), layout_(layout), world_(std::move(world)), stage_(stage), reduce_(reduce) {
  const auto options = params_.front().options().requires_grad(false);
  shard_grad_ = torch::zeros({layout_.shard_elements}, options);
  if (stage_ == 1) {
    flat_grad_ = torch::zeros({layout_.flat_elements}, options);
    for (size_t u = 0; u < layout_.units.size(); ++u) point_at_flat(u);
  }
  ready_.assign(params_.size(), 0);
  pending_.assign(layout_.units.size(), 0);
  piece_filled_.assign(layout_.units.size(), 0);
  if (!reduce_) return;
  for (size_t i = 0; i < params_.size(); ++i) {
    hooks_.push_back(std::make_unique<GradReadyHook>(params_[i], [this, i] { on_grad_ready(i); }));
  }
}

GradientShards::~GradientShards() {
  hooks_.clear();
  // Collectives still in flight (an exception unwound a round) must not outlive their buffers.
  for (auto& entry : in_flight_) {
    try {
      entry.work->wait();
    } catch (...) {
    }
  }
}

void GradientShards::point_at_flat(size_t unit) {
  torch::NoGradGuard no_grad;
  for (size_t index : layout_.units[unit].params) {
    auto& p = params_[index];
    auto slot = layout_.param_of_flat(flat_grad_, index, p);
    const auto& grad = p.grad();
    if (grad.defined() && grad.is_alias_of(flat_grad_) && grad.data_ptr() == slot.data_ptr()) continue;
    // Someone replaced it (set to None, or a new tensor): its values move into the slot.
    if (grad.defined()) slot.copy_(grad);
    else slot.zero_();
    p.mutable_grad() = slot;
  }
}

void GradientShards::on_grad_ready(size_t param) {
  if (!sync_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!round_open_) {
    open_round_locked();
    queue_end_of_backward_callback([this] { end_round(); });
  }
  if (ready_[param]) return;
  ready_[param] = 1;
  if (--pending_[layout_.unit_of[param]] != 0) return;
  while (next_unit_ < layout_.units.size() && pending_[next_unit_] == 0) launch(next_unit_++);
}

void GradientShards::open_round_locked() {
  round_open_ = true;
  std::fill(ready_.begin(), ready_.end(), 0);
  for (size_t u = 0; u < layout_.units.size(); ++u) pending_[u] = layout_.units[u].params.size();
  next_unit_ = 0;
}

void GradientShards::end_round() {
  std::lock_guard<std::mutex> lock(mutex_);
  const double start = trace_clock_us();
  // Whatever happens below (a failed collective), the round is over.
  struct Close {
    GradientShards* self;
    ~Close() {
      self->round_open_ = false;
      ++self->rounds_;
    }
  } close{this};
  while (next_unit_ < layout_.units.size()) launch(next_unit_++);
  while (!in_flight_.empty()) {
    InFlight entry = std::move(in_flight_.front());
    in_flight_.pop_front();
    settle(entry);
  }
  last_exposed_comm_s_ = (trace_clock_us() - start) * 1e-6;
}

void GradientShards::run_round() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    open_round_locked();
  }
  end_round();
}

void GradientShards::launch(size_t unit) {
  torch::NoGradGuard no_grad;
  InFlight entry{unit, nullptr, {}, {}};
  torch::Tensor piece = layout_.piece_of_shard(shard_grad_, unit);
  if (stage_ == 1) {
    point_at_flat(unit);  // usually nothing to do: autograd accumulates into the views
    torch::Tensor input = layout_.unit_of_flat(flat_grad_, unit);
    entry.work = world_->reduce_scatter_async(input, piece, ReduceOp::Avg);
  } else {
    entry.staging = take_unit_gradients(unit);
    // The first contribution since zero() lands in the shard gradient directly; later ones (more
    // rounds before a step: accumulation) are added to it once they arrive.
    if (piece_filled_[unit]) {
      entry.received = torch::empty({layout_.units[unit].piece}, shard_grad_.options());
      entry.work = world_->reduce_scatter_async(entry.staging, entry.received, ReduceOp::Avg);
    } else {
      entry.work = world_->reduce_scatter_async(entry.staging, piece, ReduceOp::Avg);
      piece_filled_[unit] = 1;
    }
  }
  in_flight_.push_back(std::move(entry));
  if (stage_ == 2 && in_flight_.size() > kUnitsInFlight) {
    InFlight oldest = std::move(in_flight_.front());
    in_flight_.pop_front();
    settle(oldest);
  }
}

// Stage 2: the unit's gradients as one flat tensor of its padded length, and the .grad released
// (the tensor returned keeps their memory until the reduce-scatter has read it). A unit of one
// parameter whose gradient already has that length is sent as it is, without a copy.
torch::Tensor GradientShards::take_unit_gradients(size_t unit) {
  const auto& u = layout_.units[unit];
  const int64_t padded = u.piece * layout_.world_size;
  if (u.params.size() == 1) {
    auto& p = params_[u.params.front()];
    const auto& grad = p.grad();
    if (grad.defined() && grad.numel() == padded && grad.is_contiguous()) {
      torch::Tensor whole = grad.view({padded});
      p.mutable_grad() = torch::Tensor();
      return whole;
    }
  }
  torch::Tensor staging = torch::zeros({padded}, shard_grad_.options());
  for (size_t index : u.params) {
    auto& p = params_[index];
    if (!p.grad().defined()) continue;  // not reached by any backward since the last round: zeros
    staging.narrow(0, layout_.param_offset[index] - u.offset, p.numel()).copy_(p.grad().reshape(-1));
    p.mutable_grad() = torch::Tensor();  // ZeRO-2: the whole gradient is not kept
  }
  return staging;
}

void GradientShards::settle(InFlight& entry) {
  entry.work->wait();
  if (entry.received.defined()) {
    torch::NoGradGuard no_grad;
    layout_.piece_of_shard(shard_grad_, entry.unit).add_(entry.received);
  }
}

void GradientShards::finish_backward() {
  if (reduce_ && sync_ && rounds_ == rounds_seen_by_finish_) run_round();
  rounds_seen_by_finish_ = rounds_;
}

void GradientShards::complete() {
  if (!reduce_) {
    take_local_gradients();
    return;
  }
  if (rounds_ == rounds_seen_by_complete_) run_round();
  rounds_seen_by_complete_ = rounds_seen_by_finish_ = rounds_;
}

void GradientShards::take_local_gradients() {
  torch::NoGradGuard no_grad;
  const int rank = world_->rank();
  for (size_t u = 0; u < layout_.units.size(); ++u) {
    torch::Tensor piece = layout_.piece_of_shard(shard_grad_, u);
    if (stage_ == 1) {
      point_at_flat(u);
      piece.copy_(layout_.piece_of_flat(flat_grad_, u, rank));
      continue;
    }
    // Stage 2 on one rank: the piece is the whole unit; its gradients are added and released.
    piece.add_(take_unit_gradients(u));
  }
}

void GradientShards::zero() {
  torch::NoGradGuard no_grad;
  shard_grad_.zero_();
  std::fill(piece_filled_.begin(), piece_filled_.end(), 0);
  if (stage_ == 1) {
    flat_grad_.zero_();
    for (size_t u = 0; u < layout_.units.size(); ++u) point_at_flat(u);
  } else {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
  }
}

int64_t GradientShards::held_bytes() const {
  const int64_t elements = shard_grad_.numel() + (flat_grad_.defined() ? flat_grad_.numel() : 0);
  return elements * static_cast<int64_t>(shard_grad_.element_size());
}

}  // namespace dpt::zero
