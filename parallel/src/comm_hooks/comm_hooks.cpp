#include "dptrain/parallel/comm_hooks/comm_hooks.h"

namespace dpt {

torch::Tensor BucketFuture::wait() {
  if (result_.defined()) return result_;
  if (work_) work_->wait();
  result_ = then_ ? then_() : torch::Tensor();
  work_.reset();
  then_ = nullptr;
  return result_;
}

std::vector<torch::Tensor> GradBucket::gradients() const {
  std::vector<torch::Tensor> views;
  views.reserve(parameters_.size());
  int64_t offset = 0;
  for (const auto& param : parameters_) {
    views.push_back(buffer_.narrow(0, offset, param.numel()).view(param.sizes()));
    offset += param.numel();
  }
  return views;
}

namespace comm_hooks {
namespace {

BucketFuture compress(GradBucket& bucket, torch::ScalarType wire_dtype) {
  torch::NoGradGuard no_grad;
  torch::Tensor buffer = bucket.buffer();
  torch::Tensor compressed = buffer.to(wire_dtype).div_(bucket.divisor());
  WorkPtr work = bucket.communicator().allreduce_async(compressed);
  return BucketFuture(std::move(work), [buffer, compressed]() mutable {
    torch::NoGradGuard guard;
    if (!compressed.is_same(buffer)) buffer.copy_(compressed);
    return buffer;
  });
}

}  // namespace

BucketFuture allreduce_average(GradBucket& bucket) {
  return average_when_summed(bucket.communicator().allreduce_async(bucket.buffer()), bucket);
}

BucketFuture average_when_summed(WorkPtr work, GradBucket& bucket) {
  torch::Tensor buffer = bucket.buffer();
  const double divisor = bucket.divisor();
  return BucketFuture(std::move(work), [buffer, divisor]() mutable {
    torch::NoGradGuard no_grad;
    if (divisor != 1.0) buffer.div_(divisor);
    return buffer;
  });
}

BucketFuture fp16_compress(GradBucket& bucket) { return compress(bucket, torch::kHalf); }
BucketFuture bf16_compress(GradBucket& bucket) { return compress(bucket, torch::kBFloat16); }

}  // namespace comm_hooks
}  // namespace dpt
