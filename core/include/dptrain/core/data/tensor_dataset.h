// A dataset over tensors held in memory: example i is (inputs[i], targets[i]); either may be a
// tuple of tensors (example i then takes row i of each).
//
//   auto data = std::make_shared<dpt::TensorDataset>(torch::randn({100, 3, 32, 32}),
//                                                    torch::randint(10, {100}));
#pragma once

#include <optional>
#include <string>

#include <torch/torch.h>

#include "dptrain/core/data/dataset.h"

namespace dpt {

class TensorDataset : public Dataset {
 public:
  // Every part of inputs and targets must have the same first dimension (InvalidArgumentError
  // otherwise).
  // `origin`: the file(s) the tensors came from, for error messages ("" when made in memory).
  TensorDataset(Tensors inputs, Tensors targets, std::string origin = "");

  int64_t size() const override;
  // Views into inputs/targets (no copy).
  Example get(int64_t index) const override;

  const Tensors& inputs() const { return inputs_; }
  const Tensors& targets() const { return targets_; }
  const std::string& origin() const { return origin_; }
  // The number of classes the data declares (a tensor file's "num_classes" or "classes" entry);
  // nullopt when it declares none.
  std::optional<int64_t> num_classes() const { return num_classes_; }
  void set_num_classes(std::optional<int64_t> classes) { num_classes_ = classes; }

 private:
  Tensors inputs_;
  Tensors targets_;
  std::string origin_;
  std::optional<int64_t> num_classes_;
};

}  // namespace dpt
