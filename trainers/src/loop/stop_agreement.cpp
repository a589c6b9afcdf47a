#include "loop/stop_agreement.h"

#include "dptrain/core/stop_request.h"
#include "loop/background_collective.h"

namespace dpt {

StopAgreement::StopAgreement(CommunicatorPtr world) : world_(std::move(world)) {}

StopAgreement::~StopAgreement() { settle_background_collective(reduction_, {flag_}); }

bool StopAgreement::stop_now() {
  if (!StopRequest::installed()) return false;  // no handler: no signal can ask
  if (world_->size() == 1) return StopRequest::requested();
  const torch::Device device = world_->device();
  bool stop = false;
  if (device.is_cpu()) {
    if (reduction_) {
      reduction_->wait();
      stop = flag_.item<int32_t>() > 0;
    }
  } else {
    // The result of two boundaries ago, copied to the host behind the kernels of the last step.
    if (copied_) {
      copied_->synchronize();
      stop = host_.item<int32_t>() > 0;
      copied_.reset();
    }
    if (reduction_) {
      reduction_->wait();  // a stream dependency: the copy below runs after the reduction
      if (!host_.defined()) host_ = torch::empty({1}, torch::dtype(torch::kInt32).pinned_memory(true));
      host_.copy_(flag_, /*non_blocking=*/true);
      copied_.emplace(device.type());
      copied_->record(c10::impl::getDeviceGuardImpl(device.type())->getStream(device));
    }
  }
  reduction_.reset();
  if (stop) return true;
  flag_ = torch::full({1}, StopRequest::requested() ? 1 : 0, torch::dtype(torch::kInt32).device(device));
  reduction_ = world_->allreduce_async(flag_, ReduceOp::Max);
  return false;
}

}  // namespace dpt
