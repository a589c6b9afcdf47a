// Communication hooks: how one gradient bucket is reduced across ranks.
//
// Like PyTorch's DDP comm hooks: a hook gets a GradBucket (the flat buffer holding the gradients
// of several parameters) and returns a BucketFuture; when the future's wait() returns, its tensor
// holds the averaged gradients (same numel as the bucket; DDP copies it into the bucket when it is
// not the bucket itself). The hook runs inside the backward pass as soon as the bucket is full, so
// it must only *start* communication (the *_async collectives) and defer the rest to the future.
//
// Contract: every rank runs the hook on the same buckets in the same order (DDP guarantees it);
// the hook must issue the same collectives on every rank.
//
//   // A user hook: plain sum-then-average, written out.
//   dpt::CommHook my_hook = [](dpt::GradBucket& bucket) {
//     torch::Tensor buffer = bucket.buffer();
//     dpt::WorkPtr work = bucket.communicator().allreduce_async(buffer);
//     double divisor = bucket.divisor();
//     return dpt::BucketFuture(work, [buffer, divisor]() mutable { return buffer.div_(divisor); });
//   };
//   ddp.register_comm_hook(my_hook);
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/comm/work.h"

namespace dpt {

class GradBucket {
 public:
  GradBucket(size_t index, bool is_last, torch::Tensor buffer, Communicator& communicator, double divisor,
             std::vector<torch::Tensor> parameters)
      : index_(index), is_last_(is_last), buffer_(std::move(buffer)), communicator_(&communicator),
        divisor_(divisor), parameters_(std::move(parameters)) {}

  size_t index() const { return index_; }
  bool is_last() const { return is_last_; }
  // The flat, contiguous gradients of this bucket's parameters (dtype and device of the parameters).
  torch::Tensor& buffer() { return buffer_; }
  const torch::Tensor& buffer() const { return buffer_; }
  Communicator& communicator() const { return *communicator_; }
  // What the summed gradients are divided by: the world size, or the number of ranks still
  // training under join() with divide_by_initial_world_size(false).
  double divisor() const { return divisor_; }
  const std::vector<torch::Tensor>& parameters() const { return parameters_; }
  // Views of buffer() shaped like each parameter, in parameters() order (the bucket lays them out
  // one after another).
  std::vector<torch::Tensor> gradients() const;

 private:
  size_t index_;
  bool is_last_;
  torch::Tensor buffer_;
  Communicator* communicator_;
  double divisor_;
  std::vector<torch::Tensor> parameters_;
};

// A pending bucket reduction: a Work plus what to do once it has finished.
class BucketFuture {
 public:
  // `then` runs after work->wait() and returns the reduced bucket contents.
  BucketFuture(WorkPtr work, std::function<torch::Tensor()> then)
      : work_(std::move(work)), then_(std::move(then)) {}
  // Already done (world size 1, or a hook that reduced synchronously).
  explicit BucketFuture(torch::Tensor result) : result_(std::move(result)) {}

  // Blocks until done; returns the reduced contents. Idempotent.
  torch::Tensor wait();
  bool is_completed() const { return result_.defined() || !work_ || work_->is_completed(); }

 private:
  WorkPtr work_;
  std::function<torch::Tensor()> then_;
  torch::Tensor result_;
};

using CommHook = std::function<BucketFuture(GradBucket&)>;

namespace comm_hooks {
// The future of `bucket` being summed in place by `work` (any all-reduce of bucket.buffer()):
// divided by bucket.divisor() once done. The tail of every sum-then-average hook.
BucketFuture average_when_summed(WorkPtr work, GradBucket& bucket);
// Sum over ranks, then divide by bucket.divisor(): the default.
BucketFuture allreduce_average(GradBucket& bucket);
// Casts the bucket to float16 (after dividing by the divisor, so sums do not overflow), reduces
// that, and casts back: half the bytes on the wire, ~3 decimal digits of precision.
BucketFuture fp16_compress(GradBucket& bucket);
// The same with bfloat16: float32's range, ~2-3 decimal digits.
BucketFuture bf16_compress(GradBucket& bucket);
}  // namespace comm_hooks

}  // namespace dpt
