// Gradient buckets of DistributedDataParallel: which parameters share one flat buffer.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <optional>
#include <vector>

#include "dptrain/parallel/comm_hooks/comm_hooks.h"

namespace dpt {

// One flat buffer holding the gradients of several parameters of one device and dtype.
struct Bucket {
  // Flat, contiguous; one allreduce per iteration. Allocated at the first synchronized backward:
  // a DDP whose gradients are only ever accumulated locally or reduced by someone else (a
  // ShardedOptimizer) holds no second gradient copy.
  torch::Tensor contents;
  int64_t numel = 0;
  torch::TensorOptions options;
  std::vector<size_t> param_indices;      // into the DDP parameter list, in bucket order
  std::vector<int64_t> offsets;           // element offset of each parameter in `contents`
  std::vector<torch::Tensor> views;       // contents[offset:offset+numel] shaped like the parameter
  size_t pending = 0;                     // gradients not yet ready in this backward pass
  std::optional<BucketFuture> future;     // the reduction in flight
  double launch_time_us = 0;              // when the hook was run (for traces)
  size_t nbytes() const { return static_cast<size_t>(numel) * options.dtype().itemsize(); }
};

// Groups parameters into buckets: parameters are taken in `order` (indices into `params`); each
// (device, dtype) has its own open bucket, closed once it holds >= its cap (the first bucket of
// each group is capped by first_cap_bytes, later ones by cap_bytes; a single large parameter gets a
// bucket of its own). Buckets are returned in the order of their first parameter in `order` -
// the order they are expected to become ready. Pure function: every rank computes the same
// assignment from the same order.
//   order = reverse registration order at construction (gradients of the last layers come first
//   in backward); the order gradients actually became ready after the first iteration.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<torch::Tensor>& params,
                                                const std::vector<size_t>& order, size_t first_cap_bytes,
                                                size_t cap_bytes);

}  // namespace dpt
