#include "dptrain/parallel/ddp/per_bucket_optimizer.h"

#include <unordered_map>
#include <utility>

#include "dptrain/core/error.h"

namespace dpt {

PerBucketOptimizer::PerBucketOptimizer(torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> params)
    : optimizer_(optimizer), params_(std::move(params)), group_of_(params_.size(), -1) {
  DPT_CHECK(dynamic_cast<torch::optim::LBFGS*>(&optimizer) == nullptr, UnsupportedError,
            "DistributedDataParallel::overlap_optimizer: LBFGS needs the whole gradient and a closure for "
            "each step, it cannot step one bucket at a time");
  std::unordered_map<const c10::TensorImpl*, size_t> index_of;
  for (size_t i = 0; i < params_.size(); ++i) index_of.emplace(params_[i].unsafeGetTensorImpl(), i);
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t k = 0; k < groups[g].params().size(); ++k) {
      auto found = index_of.find(groups[g].params()[k].unsafeGetTensorImpl());
      DPT_CHECK(found != index_of.end(), InvalidArgumentError,
                "DistributedDataParallel::overlap_optimizer: parameter ", k, " of the optimizer's param group ", g,
                " is not a parameter of this DDP's model; it would never be stepped");
      DPT_CHECK(group_of_[found->second] < 0, InvalidArgumentError,
                "DistributedDataParallel::overlap_optimizer: a parameter is in the optimizer's param groups ",
                group_of_[found->second], " and ", g);
      group_of_[found->second] = static_cast<int>(g);
    }
  }
  param_count_ = optimizer_param_count();
}

size_t PerBucketOptimizer::optimizer_param_count() const {
  size_t count = 0;
  for (const auto& group : optimizer_.param_groups()) count += group.params().size();
  return count;
}

void PerBucketOptimizer::step(const std::vector<size_t>& indices) {
  auto& groups = optimizer_.param_groups();
  DPT_CHECK(optimizer_param_count() == param_count_, InvalidArgumentError,
            "DistributedDataParallel::overlap_optimizer: the optimizer's parameters changed after it was "
            "registered (add_param_group?); register it again");
  std::vector<std::vector<torch::Tensor>> narrowed(groups.size());
  for (size_t i : indices) {
    if (group_of_[i] >= 0) narrowed[static_cast<size_t>(group_of_[i])].push_back(params_[i]);
  }
  // Swapped in, and back out even when step() throws: the optimizer must keep all its parameters.
  struct Swap {
    std::vector<torch::optim::OptimizerParamGroup>& groups;
    std::vector<std::vector<torch::Tensor>>& narrowed;
    void run() {
      for (size_t g = 0; g < groups.size(); ++g) std::swap(groups[g].params(), narrowed[g]);
    }
    ~Swap() { run(); }
  } swap{groups, narrowed};
  swap.run();
  optimizer_.step();
}

}  // namespace dpt
