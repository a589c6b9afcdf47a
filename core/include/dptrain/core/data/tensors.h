// One tensor or a tuple of tensors: what a sample's input or target is, and a batch of them.
//
// A model of one input takes the single tensor (forward(x)); a model of several takes each part as
// an argument (forward(image, mask)); a TorchScript training_step(inputs, targets) receives a
// tuple as a Tuple[Tensor, ...]. Every part of a batch has the samples along dimension 0.
//
//   dpt::Tensors x = torch::randn({8, 3});                          // one tensor
//   dpt::Tensors xy = dpt::Tensors::tuple({torch::randn({8, 3}), torch::randn({8, 5})});
//   xy.map([](const torch::Tensor& t) { return t.to(torch::kCUDA); });
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace dpt {

class Tensors {
 public:
  Tensors() = default;
  Tensors(torch::Tensor tensor);  // NOLINT(google-explicit-constructor): one tensor is the common case
  static Tensors tuple(std::vector<torch::Tensor> parts);

  bool defined() const { return !parts_.empty() && parts_.front().defined(); }
  bool is_tuple() const { return tuple_; }
  const std::vector<torch::Tensor>& parts() const { return parts_; }
  // The single tensor; DataError naming `what` ("the inputs", "--loss mse's targets") and saying
  // that it is a tuple otherwise.
  const torch::Tensor& tensor(const std::string& what = "the tensors") const;
  // The same, implicitly: code written for one tensor (torch::Tensor x = batch.inputs) reads on.
  operator const torch::Tensor&() const { return tensor(); }  // NOLINT(google-explicit-constructor)
  // Dimension 0 of the first part (the samples of a batch).
  int64_t samples() const;
  // "[8, 3]" or "([8, 3], [8, 5])".
  std::string shapes() const;

  // `f` applied to every part (to a device, pinned, sliced, ...), the tuple kept.
  Tensors map(const std::function<torch::Tensor(const torch::Tensor&)>& f) const;
  // A Tensor, or a Tuple of them (TorchScript's view).
  c10::IValue ivalue() const;
  // forward's arguments: one per part.
  std::vector<c10::IValue> arguments() const;

  // Part by part, all items of one arity (InvalidArgumentError otherwise).
  static Tensors stack(const std::vector<Tensors>& items);
  static Tensors cat(const std::vector<Tensors>& items);

 private:
  static Tensors per_part(const std::vector<Tensors>& items, const char* what,
                          const std::function<torch::Tensor(std::vector<torch::Tensor>)>& join);
  std::vector<torch::Tensor> parts_;
  bool tuple_ = false;
};

}  // namespace dpt
