#include "dptrain/parallel/data_parallel/replicate.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <string>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// Backward of "copy the original onto every replica": the gradients the replicas' parameters
// received, moved to the original's device and summed, handed to the original's gradient edge.
// See Note [DataParallel gradients] in replicate.h.
class ReplicaGradSum final : public torch::autograd::Node {
 public:
  explicit ReplicaGradSum(const torch::Tensor& original)
      : Node(torch::autograd::collect_next_edges(original)),
        device_(original.device()),
        dtype_(original.scalar_type()) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::Tensor sum;
    for (auto& grad : grads) {
      if (!grad.defined()) continue;  // a replica that did not use this parameter
      auto moved = grad.to(device_, dtype_, /*non_blocking=*/true);
      // Out of place: the incoming gradients may be buffers the engine shares with other nodes.
      sum = sum.defined() ? sum + moved : moved;
    }
    return {sum};
  }

  std::string name() const override { return "dpt::ReplicaGradSum"; }

 private:
  torch::Device device_;
  torch::ScalarType dtype_;
};

}  // namespace

void link_replica_gradients(const std::vector<torch::Tensor>& originals,
                            const std::vector<std::vector<torch::Tensor>>& replicas) {
  for (size_t k = 0; k < replicas.size(); ++k) {
    DPT_ASSERT(replicas[k].size() == originals.size(), "replica ", k, " has ", replicas[k].size(),
               " parameters to link, the original ", originals.size());
  }
  for (size_t i = 0; i < originals.size(); ++i) {
    const auto& original = originals[i];
    DPT_ASSERT(original.requires_grad(), "parameter ", i, " does not require grad");
    auto node = std::make_shared<ReplicaGradSum>(original);
    for (const auto& replica : replicas) {
      const auto& tensor = replica[i];
      DPT_ASSERT(tensor.sizes() == original.sizes() && tensor.scalar_type() == original.scalar_type(),
                 "replica parameter ", i, " does not match its original");
      const auto input_nr = node->add_input_metadata(tensor);
      torch::autograd::impl::set_gradient_edge(tensor, {node, input_nr});
    }
  }
}

void unlink_replica_tensor(const torch::Tensor& replica) {
  if (!replica.defined()) return;
  if (replica.grad_fn()) torch::autograd::impl::set_gradient_edge(replica, torch::autograd::Edge());
  if (replica.requires_grad()) replica.requires_grad_(false);
}

}  // namespace dpt
