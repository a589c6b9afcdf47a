#include "dptrain/core/data/tensor_dataset.h"

#include <utility>

#include "dptrain/core/error.h"

namespace dpt {

TensorDataset::TensorDataset(torch::Tensor inputs, torch::Tensor targets)
    : inputs_(std::move(inputs)), targets_(std::move(targets)) {
  DPT_CHECK(inputs_.defined() && targets_.defined(), InvalidArgumentError,
            "TensorDataset: inputs and targets must be defined tensors");
  DPT_CHECK(inputs_.dim() >= 1 && targets_.dim() >= 1, InvalidArgumentError,
            "TensorDataset: inputs and targets need a first (example) dimension, got ", inputs_.dim(), "-d inputs and ",
            targets_.dim(), "-d targets");
  DPT_CHECK(inputs_.size(0) == targets_.size(0), InvalidArgumentError, "TensorDataset: ", inputs_.size(0),
            " inputs but ", targets_.size(0), " targets");
}

int64_t TensorDataset::size() const {
  return inputs_.size(0);
}

Example TensorDataset::get(int64_t index) const {
  DPT_CHECK(index >= 0 && index < size(), InvalidArgumentError, "TensorDataset: index ", index, " out of range [0, ",
            size(), ")");
  return Example{inputs_[index], targets_[index]};
}

}  // namespace dpt
