// dpt::Model: one handle on a trainable model, whether it is a C++ torch::nn module, a TorchScript
// module exported from PyTorch (torch.jit.script / trace -> torch::jit::load), or a training step
// compiled ahead of time from PyTorch (python/dptrain_export -> a .pt2 package, exported_program.h).
//
// DataParallel, DistributedDataParallel and the Trainer take a Model, so each is written once for
// both kinds. A Model is a cheap shared handle (copies refer to the same module), like
// torch::nn::ModuleHolder and torch::jit::Module themselves.
//
//   dpt::Model cpp_model(torch::nn::Sequential(torch::nn::Linear(784, 10)));
//   dpt::Model script_model = dpt::Model::load_torchscript("model.pt");
//   dpt::Model compiled = dpt::Model::load("net-step.pt2");   // either file kind
//   torch::Tensor logits = script_model.forward(images);
//
// A compiled package has no autograd: it trains through its compiled step (train_step, which the
// Trainer calls), its forward is the eval program, and it cannot be replicated (DataParallel).
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dptrain/core/exported_program.h"
#include "dptrain/core/serialize.h"

namespace dpt {

using NamedTensorList = std::vector<std::pair<std::string, torch::Tensor>>;

class Model {
 public:
  // How a C++ module is called: the module (of the holder's concrete type) and one input tensor.
  using CppForward = std::function<torch::Tensor(torch::nn::Module&, const torch::Tensor&)>;

  // Any torch::nn module with a forward(Tensor) -> Tensor, given as its ModuleHolder
  // (torch::nn::Sequential, a TORCH_MODULE(...) of yours). clone() needs a torch::nn::Cloneable.
  template <typename ModuleHolder, typename Impl = typename ModuleHolder::ContainedType>
  Model(ModuleHolder module)
      : Model(module.ptr(), [](torch::nn::Module& m, const torch::Tensor& x) -> torch::Tensor {
          return static_cast<Impl&>(m).forward(x);
        }) {}
  Model(std::shared_ptr<torch::nn::Module> module, CppForward forward);
  explicit Model(torch::jit::Module module);
  explicit Model(std::shared_ptr<ExportedProgram> program);

  // A TorchScript file or a compiled package (.pt2), told apart by content; ModelError naming the
  // file when it is neither.
  static Model load(const std::string& path, const std::optional<torch::Device>& device = std::nullopt);
  static Model from_bytes(const Bytes& bytes, const std::string& origin,
                          const std::optional<torch::Device>& device = std::nullopt);

  // Reads a TorchScript file; ModelError naming the file when it is not one or has no forward.
  static Model load_torchscript(const std::string& path, const std::optional<torch::Device>& device = std::nullopt);
  // The same from bytes (e.g. received from rank 0); `origin` names the source in errors.
  static Model from_torchscript_bytes(const Bytes& bytes, const std::string& origin,
                                      const std::optional<torch::Device>& device = std::nullopt);

  bool is_torchscript() const { return script_ != nullptr; }
  bool is_exported() const { return exported_ != nullptr; }
  ExportedProgram& exported();              // throws InvalidArgumentError for other models
  // One compiled training step (exported models only; see ExportedProgram::train_step).
  torch::Tensor train_step(const torch::Tensor& inputs, const torch::Tensor& targets, double grad_scale = 1.0);
  torch::jit::Module& torchscript();        // throws InvalidArgumentError for a C++ model
  torch::nn::Module& module();              // throws InvalidArgumentError for a TorchScript model
  std::shared_ptr<torch::nn::Module> module_ptr() const;

  // forward(x) for single-tensor models; the IValue form for anything else. A TorchScript model in
  // training mode with grad enabled runs the executor's unoptimized plan (eager autograd, see
  // Note [TorchScript training runs the unoptimized plan] in model.cpp).
  torch::Tensor forward(const torch::Tensor& input);
  c10::IValue forward(std::vector<c10::IValue> inputs);
  // Another method of a TorchScript model (training_step, validation_step, ...), run like forward.
  bool has_method(const std::string& name) const;
  c10::IValue run_method(const std::string& name, std::vector<c10::IValue> inputs);

  // Trainable parameters (requires_grad) in registration order, with dotted names ("layer1.0.weight").
  NamedTensorList named_parameters() const;
  std::vector<torch::Tensor> parameters() const;
  // Buffers (BatchNorm running statistics, ...) in registration order.
  NamedTensorList named_buffers() const;

  // train(true) also calls prepare_for_training().
  void train(bool on = true);
  // This model is about to be trained (DistributedDataParallel, DataParallel and the Trainer call
  // it): from now on a TorchScript model runs the executor's unoptimized plan in every call, so its
  // backward is eager autograd, parameter by parameter. No-op for C++ models.
  void prepare_for_training();
  void eval() { train(false); }
  bool is_training() const;
  void to(torch::Device device);
  torch::Device device() const;  // the device of the first parameter (CPU when there is none)

  // A deep copy (parameters and buffers copied) on `device`: the replicas of DataParallel.
  Model clone(torch::Device device) const;

  // Parameters and buffers by name, and back (shapes must match; errors name the tensor).
  NamedTensors state_dict() const;
  void load_state_dict(const NamedTensors& state, bool strict = true);

 private:
  c10::IValue run_script(std::vector<c10::IValue> inputs, const std::string& method = "forward");

  // Shared by the copies of this Model (see run_script).
  struct Script {
    torch::jit::Module module;
    bool eager_autograd = false;  // every call runs the unoptimized plan
    bool ran_optimized = false;   // the executor may hold an optimized plan
  };

  struct Exported {
    std::shared_ptr<ExportedProgram> program;
    bool training = true;
  };

  std::shared_ptr<torch::nn::Module> cpp_;
  CppForward cpp_forward_;
  std::shared_ptr<Script> script_;
  std::shared_ptr<Exported> exported_;
};

}  // namespace dpt
