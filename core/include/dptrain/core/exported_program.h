// A model authored in PyTorch and compiled ahead of time for training: the package written by
// python/dptrain_export (torch.export's joint forward-backward graph and the eval forward, both
// compiled by AOTInductor into one .pt2 file; docs/export.md). No TorchScript, no Python here.
//
//   auto program = dpt::ExportedProgram::load("net-step.pt2");
//   torch::Tensor loss = program->train_step(images, labels, /*grad_scale=*/1.0);  // .grad filled
//   optimizer.step();                              // on program->parameters(): the package reads them
//   torch::Tensor logits = program->forward(images);  // the eval program
//
// dptrain owns the parameters and buffers: they are handed to both compiled programs as
// user-managed constants, so an optimizer updating them in place is what the next step computes
// with, and checkpoints, broadcasts and state_dict loads need nothing special. Usually used through
// dpt::Model (model.h), which the Trainer, DDP's gradient averaging and `dptrain` take.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dptrain/core/serialize.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace dpt {

class ExportedProgram {
 public:
  // Opens a package. ModelError naming `path` when it is not a dptrain package, was made by
  // another PyTorch version, or lacks a program or the loss output.
  // `cuda_index`: the GPU a CUDA package runs on (-1: the current one); ignored for CPU packages.
  static std::shared_ptr<ExportedProgram> load(const std::string& path, int cuda_index = -1);
  // The same from bytes (e.g. read by rank 0 and broadcast): written to a private temporary file.
  static std::shared_ptr<ExportedProgram> from_bytes(const Bytes& bytes, const std::string& origin,
                                                     int cuda_index = -1);
  // Whether the bytes start like such a package (a zip archive holding AOTInductor programs).
  static bool looks_like_package(const Bytes& bytes);
  ~ExportedProgram();

  // One training step: the mean loss of the batch (a 0-dim tensor); each parameter's gradient
  // times `grad_scale` added to its .grad (accumulation: 1 / micro-batches); buffers the step
  // updates (BatchNorm statistics) are written in place by the program (they are bound to it). InvalidArgumentError when the batch does not
  // fit the package's input or target spec.
  torch::Tensor train_step(const torch::Tensor& inputs, const torch::Tensor& targets, double grad_scale);
  // The eval program: outputs for a batch (no gradients).
  torch::Tensor forward(const torch::Tensor& inputs);

  // Names of the original PyTorch model (model.named_parameters() / named_buffers()).
  const std::vector<std::pair<std::string, torch::Tensor>>& parameters() const { return parameters_; }
  const std::vector<std::pair<std::string, torch::Tensor>>& buffers() const { return buffers_; }
  const std::string& loss() const { return loss_; }
  // The c10d group name the train program all-reduces its gradients over (exported with
  // reduce_gradients=True: each gradient averaged inside the compiled backward), or "" when the
  // gradients leave the program unreduced.
  const std::string& gradient_group() const { return gradient_group_; }
  torch::Device device() const { return device_; }
  const std::string& origin() const { return origin_; }

 private:
  struct Output {
    enum class Kind { Loss, Gradient } kind;
    size_t index = 0;  // into parameters_
  };
  struct Spec {
    std::vector<int64_t> shape;  // without the batch dimension
    std::string dtype;
  };

  ExportedProgram(const std::string& path, const std::string& origin, int cuda_index);
  void read_metadata(int cuda_index);
  void take_initial_values();
  void bind_constants();
  void check_batch(const torch::Tensor& tensor, const Spec& spec, const char* what) const;

  std::string origin_;
  std::string loss_;
  std::string gradient_group_;
  torch::Device device_{torch::kCPU};
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> train_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> eval_;
  std::vector<std::pair<std::string, torch::Tensor>> parameters_;
  std::vector<std::pair<std::string, torch::Tensor>> buffers_;
  std::vector<Output> outputs_;
  Spec input_spec_, target_spec_;
  std::vector<std::string> mutated_buffers_;  // buffers the train program updates in place
  bool dynamic_batch_ = true;
  bool mean_loss_ = true;
};

}  // namespace dpt
