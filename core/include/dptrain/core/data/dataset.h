// The dataset interface of the data pipeline: random access to (input, target) examples.
//
// Like torch.utils.data.Dataset (map-style): size() examples, get(i) for 0 <= i < size().
// get() is const and is called concurrently from the PreprocessPool's worker threads, so an
// implementation must be safe to read from several threads at once (in-memory tensors are).
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "dptrain/core/data/tensors.h"

namespace dpt {

// One example. For images: input [C,H,W] float, target a 0-dim int64 class label. Either may be
// a tuple of tensors (Tensors::tuple) for models of several inputs or targets.
struct Example {
  Tensors input;
  Tensors target;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The example at `index`; InvalidArgumentError when index is out of [0, size()).
  // The tensors may be views of the dataset's storage: never modify them in place.
  virtual Example get(int64_t index) const = 0;
};

}  // namespace dpt
