// Scatter and gather of DataParallel: split a batch along dim 0 over devices, and join the
// replicas' outputs back on one device. Both are differentiable (chunk / to / cat), so gradients
// flow from the gathered output back to the inputs, like torch.nn.parallel.scatter / gather.
//
//   auto pieces = dpt::scatter({x}, {cpu, cpu, cpu});   // x: [10, 4] -> pieces of 4, 4 and 2 rows
//   auto out = dpt::gather({y0, y1, y2}, cpu);          // [10, ...] again
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace dpt {

// The sizes a batch of `batch` rows is split into over `parts` devices, with torch.chunk's
// semantics (what PyTorch's DataParallel does): pieces of ceil(batch / parts) rows, the last one
// smaller, and fewer pieces than `parts` when the batch is small: 10 over 3 -> {4, 4, 2};
// 5 over 4 -> {2, 2, 1}; 2 over 4 -> {1, 1}; 0 rows -> {0} (one empty piece).
std::vector<int64_t> chunk_sizes(int64_t batch, int64_t parts);

// Splits the positional forward arguments `inputs` for the devices. Returns one argument list per
// replica that gets work (at most devices.size(); piece i is moved to devices[i]).
//  - a Tensor is split along dim 0 (it must have at least one dimension);
//  - a tuple or list is split element-wise, recursively (a list of tensors stays a list of tensors);
//  - anything else (None, numbers, strings, an empty list) is given unchanged to every replica;
//  - the number of replicas is the smallest number of pieces of any split tensor; with no tensor
//    at all in the inputs, one replica runs.
// Throws InvalidArgumentError naming the argument for a 0-dim tensor or a dict.
std::vector<std::vector<c10::IValue>> scatter(const std::vector<c10::IValue>& inputs,
                                              const std::vector<torch::Device>& devices);

// Joins the replicas' outputs on `device` along dim 0: tensors are moved and concatenated
// (0-dim tensors, e.g. a loss per replica, are stacked into a vector, as PyTorch does), tuples and
// lists are gathered element-wise, None stays None. Throws InvalidArgumentError for other types or
// outputs whose structure differs between replicas.
c10::IValue gather(const std::vector<c10::IValue>& outputs, torch::Device device);

}  // namespace dpt
