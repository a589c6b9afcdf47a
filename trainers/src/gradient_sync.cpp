#include "gradient_sync.h"

#include <limits>

namespace dpt {

GradientSync::GradientSync(Model model, CommunicatorPtr world) : model_(std::move(model)), world_(std::move(world)) {
  // DDP checks that every rank holds the same architecture (ModelError naming the difference)
  // and broadcasts rank 0's parameters and buffers.
  if (distributed()) ddp_ = std::make_unique<DistributedDataParallel>(model_, world_);
}

GradientSync::~GradientSync() = default;

GradientSync::Scope::Scope(GradientSync& sync, bool synchronize) {
  if (sync.ddp_ && !synchronize) no_sync_ = std::make_unique<DistributedDataParallel::NoSyncGuard>(*sync.ddp_);
}

GradientSync::Scope::~Scope() = default;

torch::Tensor GradientSync::forward(const torch::Tensor& input) {
  return ddp_ ? ddp_->forward(input) : model_.forward(input);
}

c10::IValue GradientSync::call(const std::string& method, std::vector<c10::IValue> inputs) {
  return ddp_ ? ddp_->call(method, std::move(inputs)) : model_.run_method(method, std::move(inputs));
}

void GradientSync::finish() {
  // DDP reduced the gradients during the last backward; if that backward reached no parameter of
  // this rank, the reduction runs now so the other ranks are not left waiting for it.
  if (ddp_) ddp_->finish_backward();
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
