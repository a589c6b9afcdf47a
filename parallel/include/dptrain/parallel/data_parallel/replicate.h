// How DataParallel's replicas reach the original module's parameters in autograd.
//
// Note [DataParallel gradients]
// The replica on devices[k] (k >= 1) is a deep copy made once; its parameter tensors are the
// tensors its module's forward reads (LinearImpl::weight, a TorchScript attribute slot). Before a
// forward with gradients, link_replica_gradients() turns every replica parameter into a non-leaf
// tensor whose grad_fn is one autograd node per original parameter (dpt::ReplicaGradSum). In
// backward that node receives the gradient of the parameter from every replica, moves them to the
// original's device, sums them, and passes the sum along the original's own gradient edge: into
// .grad for a leaf (AccumulateGrad), or further back when the original is itself computed.
// So loss.backward() alone fills the originals' .grad, exactly like PyTorch's DataParallel
// (whose replicas are outputs of the Broadcast autograd function), and torch::autograd::grad,
// hooks and create_graph=true (the sum is differentiable) see the originals too.
//
// Why modify the replica tensors in place instead of handing new tensors to the module:
// a C++ module keeps its parameters in member fields (weight, bias) that share the TensorImpl with
// parameters_["weight"]; replacing the dict entry would not change what forward() reads (see
// libtorch's Note [Replicating Modules], which makes the same choice with set_history). Setting
// the gradient edge of the existing TensorImpl works for C++ and TorchScript modules alike and
// leaves the replica's data where it is, so the refresh before each step is a plain copy_.
//
// This is the one place that uses libtorch's autograd internals (Node, set_gradient_edge).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace dpt {

// replicas[k][i] becomes a non-leaf tensor whose gradient is summed into originals[i] (one new
// autograd node per original, shared by all replicas). Shapes and dtypes of replicas[k][i] must
// equal those of originals[i]; each original must require grad. Call it on the thread that owns
// the step (not concurrently): autograd nodes are not thread-safe while they are being built.
void link_replica_gradients(const std::vector<torch::Tensor>& originals,
                            const std::vector<std::vector<torch::Tensor>>& replicas);

// Makes a replica tensor a leaf that does not require grad again (for frozen parameters, or
// before the first link). Its data is untouched.
void unlink_replica_tensor(const torch::Tensor& replica);

}  // namespace dpt
