// dpt::DataParallel: one process, several devices - torch.nn.DataParallel for C++ and TorchScript.
//
//   dpt::Model model(MyNet());                      // or dpt::Model::load_torchscript("net.pt")
//   model.to(torch::Device("cuda:0"));              // the model lives on devices[0]
//   dpt::DataParallel dp(model);                    // every visible CUDA device; {cpu, cpu} works too
//   torch::optim::SGD sgd(model.parameters(), 0.1); // built on the ORIGINAL module's parameters
//   auto loss = torch::nll_loss(dp.forward(images), labels);
//   sgd.zero_grad(); loss.backward(); sgd.step();   // .grad holds the sum over the replicas
//
// Each forward: the batch (a tensor, or tuples/lists of tensors) is split along dim 0 with
// torch.chunk's sizes (scatter_gather.h); replica k runs its piece on devices[k] on its own
// persistent thread (on the caller's current CUDA stream of that device); the outputs are
// concatenated on the output device. Replica 0 is the original module itself (it must be on
// devices[0]); replicas 1.. are deep copies made once and refreshed before each forward with a
// copy_ of the original's parameters and buffers (no re-cloning). Backward reaches the original
// parameters through autograd: see Note [DataParallel gradients] in replicate.h.
//
// Buffers (BatchNorm running statistics), as in PyTorch: every replica starts a forward with the
// original's buffers; the updates replica 0 makes are the original's (kept), those of the other
// replicas are discarded. So running statistics follow the first piece of each batch, and
// BatchNorm in training mode normalizes each piece with that piece's statistics. Details and the
// reasons for each choice: docs/data_parallel.md.
//
// Not thread-safe: one forward at a time (concurrent calls are serialized).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/core/model.h"

namespace dpt {

class DataParallel {
 public:
  // `devices`: where the replicas run; empty = every visible CUDA device (InvalidArgumentError
  // when there is none). All of one type (CPU or CUDA, with an index); the CPU may be repeated to
  // run replicas on CPU threads. `output_device`: where outputs are gathered (default devices[0]).
  // The model must be on devices[0]; C++ modules must derive from torch::nn::Cloneable.
  explicit DataParallel(Model model, std::vector<torch::Device> devices = {},
                        std::optional<torch::Device> output_device = std::nullopt);
  ~DataParallel();
  DataParallel(DataParallel&&) noexcept;
  DataParallel& operator=(DataParallel&&) noexcept;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // Single-tensor models (any C++ module): the output gathered on the output device.
  torch::Tensor forward(const torch::Tensor& input);
  torch::Tensor operator()(const torch::Tensor& input) { return forward(input); }
  // Any positional inputs (TorchScript modules): tensors and nested tuples/lists are scattered,
  // other values given to every replica; the output gathered the same way.
  c10::IValue forward(std::vector<c10::IValue> inputs);
  // Another method of a TorchScript model run the same way (pieces in, outputs gathered).
  c10::IValue call(const std::string& method, std::vector<c10::IValue> inputs);
  // The model's training_step(inputs, targets) -> loss on every replica's piece; the replicas'
  // losses combined as the mean over the whole batch (each weighted by its piece's size), so the
  // gradients equal one training_step over the batch when the loss is a per-sample mean.
  torch::Tensor training_step(const torch::Tensor& inputs, const torch::Tensor& targets);

  // The wrapped original module (PyTorch's dp.module): build optimizers, save checkpoints on it.
  Model& module();
  const std::vector<torch::Device>& devices() const;
  torch::Device output_device() const;
  // How many replicas the last forward used (fewer than devices() for a small batch).
  size_t last_replica_count() const;

  // Switch the original and the replicas between training and evaluation (the replicas also
  // follow the original's root module flag at every forward).
  void train(bool on = true);
  void eval() { train(false); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpt
