#include "dptrain/core/data/collate.h"

#include <utility>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

torch::Tensor stack(const std::vector<torch::Tensor>& parts, const std::vector<int64_t>& indices, const char* what,
                    bool pin_memory) {
  const torch::Tensor& first = parts.front();
  for (size_t i = 1; i < parts.size(); ++i) {
    DPT_CHECK(parts[i].sizes() == first.sizes() && parts[i].scalar_type() == first.scalar_type(), InvalidArgumentError,
              "collate: the ", what, " of sample ", indices[i], " is ", parts[i].scalar_type(), " ", parts[i].sizes(),
              " but that of sample ", indices[0], " is ", first.scalar_type(), " ", first.sizes(),
              " (a batch needs one shape)");
  }
  std::vector<int64_t> shape{static_cast<int64_t>(parts.size())};
  shape.insert(shape.end(), first.sizes().begin(), first.sizes().end());
  torch::Tensor out = torch::empty(shape, first.options().pinned_memory(pin_memory));
  torch::stack_out(out, parts, 0);
  return out;
}

// Each part of the examples' `field` stacked on its own.
Tensors stack_field(const std::vector<Example>& examples, Tensors Example::*field, const std::vector<int64_t>& indices,
                    const char* what, bool pin_memory) {
  const Tensors& first = examples.front().*field;
  for (size_t i = 1; i < examples.size(); ++i) {
    const Tensors& other = examples[i].*field;
    DPT_CHECK(other.is_tuple() == first.is_tuple() && other.parts().size() == first.parts().size(),
              InvalidArgumentError, "collate: the ", what, " of sample ", indices[i], " is ", other.shapes(),
              " but that of sample ", indices[0], " is ", first.shapes(), " (a batch needs one arity)");
  }
  size_t part = 0;
  return first.map([&](const torch::Tensor&) {
    std::vector<torch::Tensor> column;
    column.reserve(examples.size());
    for (const Example& example : examples) column.push_back((example.*field).parts()[part]);
    ++part;
    return stack(column, indices, what, pin_memory);
  });
}

}  // namespace

Batch collate(const std::vector<Example>& examples, std::vector<int64_t> indices, bool pin_memory) {
  DPT_CHECK(!examples.empty() && examples.size() == indices.size(), InvalidArgumentError, "collate: ", examples.size(),
            " examples with ", indices.size(), " indices");
  Batch batch;
  batch.inputs = stack_field(examples, &Example::input, indices, "input", pin_memory);
  batch.targets = stack_field(examples, &Example::target, indices, "target", pin_memory);
  batch.indices = std::move(indices);
  return batch;
}

bool pinned_memory_available() {
  return torch::cuda::is_available();
}

}  // namespace dpt
