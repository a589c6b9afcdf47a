#include "dptrain/core/data/tensors.h"

#include <sstream>

#include "dptrain/core/error.h"

namespace dpt {

Tensors::Tensors(torch::Tensor tensor) : parts_{std::move(tensor)} {}

Tensors Tensors::tuple(std::vector<torch::Tensor> parts) {
  DPT_CHECK(!parts.empty(), InvalidArgumentError, "a tuple of tensors needs at least one tensor");
  Tensors out;
  out.parts_ = std::move(parts);
  out.tuple_ = true;
  return out;
}

const torch::Tensor& Tensors::tensor(const std::string& what) const {
  DPT_CHECK(!tuple_, DataError, what, " are a tuple of ", parts_.size(), " tensors ", shapes(),
            " where one tensor is needed");
  DPT_CHECK(!parts_.empty(), InvalidArgumentError, what, ": no tensor");
  return parts_.front();
}

int64_t Tensors::samples() const {
  DPT_CHECK(defined() && parts_.front().dim() > 0, InvalidArgumentError, "a batch without a sample dimension");
  return parts_.front().size(0);
}

std::string Tensors::shapes() const {
  std::ostringstream text;
  if (tuple_) text << "(";
  for (size_t i = 0; i < parts_.size(); ++i) text << (i ? ", " : "") << parts_[i].sizes();
  if (tuple_) text << ")";
  return text.str();
}

Tensors Tensors::map(const std::function<torch::Tensor(const torch::Tensor&)>& f) const {
  Tensors out = *this;
  for (auto& part : out.parts_) part = f(part);
  return out;
}

c10::IValue Tensors::ivalue() const {
  if (!tuple_) return parts_.empty() ? c10::IValue() : c10::IValue(parts_.front());
  std::vector<c10::IValue> elements(parts_.begin(), parts_.end());
  return c10::ivalue::Tuple::create(std::move(elements));
}

std::vector<c10::IValue> Tensors::arguments() const { return {parts_.begin(), parts_.end()}; }

Tensors Tensors::per_part(const std::vector<Tensors>& items, const char* what,
                          const std::function<torch::Tensor(std::vector<torch::Tensor>)>& join) {
  DPT_CHECK(!items.empty(), InvalidArgumentError, "Tensors::", what, " of nothing");
  const Tensors& first = items.front();
  Tensors out = first;
  for (size_t p = 0; p < first.parts_.size(); ++p) {
    std::vector<torch::Tensor> column;
    column.reserve(items.size());
    for (const auto& item : items) {
      DPT_CHECK(item.tuple_ == first.tuple_ && item.parts_.size() == first.parts_.size(), InvalidArgumentError,
                "Tensors::", what, ": ", item.shapes(), " beside ", first.shapes(), " (one arity for all)");
      column.push_back(item.parts_[p]);
    }
    out.parts_[p] = join(std::move(column));
  }
  return out;
}

Tensors Tensors::stack(const std::vector<Tensors>& items) {
  return per_part(items, "stack", [](std::vector<torch::Tensor> column) { return torch::stack(column); });
}

Tensors Tensors::cat(const std::vector<Tensors>& items) {
  return per_part(items, "cat", [](std::vector<torch::Tensor> column) { return torch::cat(column); });
}

}  // namespace dpt
