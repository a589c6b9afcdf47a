// A dataset over tensors held in memory: example i is (inputs[i], targets[i]).
//
//   auto data = std::make_shared<dpt::TensorDataset>(torch::randn({100, 3, 32, 32}),
//                                                    torch::randint(10, {100}));
#pragma once

#include <torch/torch.h>

#include "dptrain/core/data/dataset.h"

namespace dpt {

class TensorDataset : public Dataset {
 public:
  // inputs and targets must have the same first dimension (InvalidArgumentError otherwise).
  TensorDataset(torch::Tensor inputs, torch::Tensor targets);

  int64_t size() const override;
  // Views into inputs/targets (no copy).
  Example get(int64_t index) const override;

  const torch::Tensor& inputs() const { return inputs_; }
  const torch::Tensor& targets() const { return targets_; }

 private:
  torch::Tensor inputs_;
  torch::Tensor targets_;
};

}  // namespace dpt
