// SGD (with momentum, dampening, weight decay, Nesterov) stepping all parameters of a group with
// the multi-tensor _foreach_ kernels, as PyTorch's torch.optim.SGD does by default on CUDA:
// libtorch's torch::optim::SGD launches several kernels per parameter, which for ResNet-18 on a
// GPU costs about three times the step time of PyTorch's (docs/benchmarks.md). Same update, same
// state (SGDParamState::momentum_buffer), same checkpoints as torch::optim::SGD; bit-identical
// results (a unit test holds it to that).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace dpt {

class ForeachSGD final : public torch::optim::SGD {
 public:
  ForeachSGD(const std::vector<torch::Tensor>& params, torch::optim::SGDOptions defaults)
      : torch::optim::SGD(params, defaults) {}
  ForeachSGD(const std::vector<torch::optim::OptimizerParamGroup>& groups, torch::optim::SGDOptions defaults)
      : torch::optim::SGD(groups, defaults) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace dpt
