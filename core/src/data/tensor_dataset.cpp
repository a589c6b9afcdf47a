#include "dptrain/core/data/tensor_dataset.h"

#include <utility>

#include "dptrain/core/error.h"

namespace dpt {

TensorDataset::TensorDataset(Tensors inputs, Tensors targets, std::string origin)
    : inputs_(std::move(inputs)), targets_(std::move(targets)), origin_(std::move(origin)) {
  DPT_CHECK(inputs_.defined() && targets_.defined(), InvalidArgumentError,
            "TensorDataset: inputs and targets must be defined tensors");
  const int64_t samples = inputs_.parts().front().dim() >= 1 ? inputs_.parts().front().size(0) : -1;
  for (const Tensors* field : {&inputs_, &targets_}) {
    for (const auto& part : field->parts()) {
      DPT_CHECK(part.defined() && part.dim() >= 1, InvalidArgumentError,
                "TensorDataset: every input and target tensor needs a first (example) dimension; got inputs ",
                inputs_.shapes(), " and targets ", targets_.shapes());
      DPT_CHECK(part.size(0) == samples, InvalidArgumentError, "TensorDataset: inputs ", inputs_.shapes(),
                " and targets ", targets_.shapes(), " do not all count the same number of examples");
    }
  }
}

int64_t TensorDataset::size() const {
  return inputs_.samples();
}

Example TensorDataset::get(int64_t index) const {
  DPT_CHECK(index >= 0 && index < size(), InvalidArgumentError, "TensorDataset: index ", index, " out of range [0, ",
            size(), ")");
  auto row = [index](const torch::Tensor& t) { return t[index]; };
  return Example{inputs_.map(row), targets_.map(row)};
}

}  // namespace dpt
