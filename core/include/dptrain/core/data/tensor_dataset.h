// A dataset over tensors held in memory: example i is (inputs[i], targets[i]); either may be a
// tuple of tensors (example i then takes row i of each).
//
//   auto data = std::make_shared<dpt::TensorDataset>(torch::randn({100, 3, 32, 32}),
//                                                    torch::randint(10, {100}));
#pragma once

#include <torch/torch.h>

#include "dptrain/core/data/dataset.h"

namespace dpt {

class TensorDataset : public Dataset {
 public:
  // Every part of inputs and targets must have the same first dimension (InvalidArgumentError
  // otherwise).
  TensorDataset(Tensors inputs, Tensors targets);

  int64_t size() const override;
  // Views into inputs/targets (no copy).
  Example get(int64_t index) const override;

  const Tensors& inputs() const { return inputs_; }
  const Tensors& targets() const { return targets_; }

 private:
  Tensors inputs_;
  Tensors targets_;
};

}  // namespace dpt
