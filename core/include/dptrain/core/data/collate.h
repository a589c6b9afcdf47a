// Stacking examples into a batch, in page-locked (pinned) memory when it will go to a GPU.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "dptrain/core/data/dataset.h"

namespace dpt {

// One batch as the trainer receives it: inputs [B,...], targets [B,...] (each part of a tuple
// stacked on its own), and the dataset index of every row (for debugging, per-sample metrics and
// the equivalence tests).
struct Batch {
  Tensors inputs;
  Tensors targets;
  std::vector<int64_t> indices;
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

// Stacks the examples (all inputs of one shape and arity, all targets likewise; InvalidArgumentError
// naming the offending dataset index otherwise). With pin_memory the batch tensors are allocated
// pinned, so copying a batch to the GPU with `non_blocking` is truly asynchronous.
Batch collate(const std::vector<Example>& examples, std::vector<int64_t> indices, bool pin_memory);

// Whether pinned memory can be used here: CUDA is available at run time.
bool pinned_memory_available();

}  // namespace dpt
