#include "dptrain/core/model.h"

#include <torch/csrc/jit/runtime/graph_executor.h>

#include "dptrain/core/error.h"

#include <string>
#include <unordered_map>

namespace dpt {
namespace {

void check_has_forward(const torch::jit::Module& module, const std::string& origin) {
  DPT_CHECK(module.find_method("forward").has_value(), ModelError, origin,
            " is a TorchScript module without a forward method");
}

}  // namespace

Model::Model(std::shared_ptr<torch::nn::Module> module, CppForward forward)
    : cpp_(std::move(module)), cpp_forward_(std::move(forward)) {
  DPT_CHECK(cpp_ && cpp_forward_, InvalidArgumentError, "dpt::Model: empty torch::nn module");
}

Model::Model(torch::jit::Module module) : script_(std::make_shared<Script>(Script{std::move(module)})) {
  check_has_forward(script_->module, "the given module");
}

Model::Model(std::shared_ptr<ExportedProgram> program)
    : exported_(std::make_shared<Exported>(Exported{std::move(program)})) {
  DPT_CHECK(exported_->program, InvalidArgumentError, "dpt::Model: empty exported program");
}

Model Model::load(const std::string& path, const std::optional<torch::Device>& device) {
  return from_bytes(read_file(path), path, device);
}

Model Model::from_bytes(const Bytes& bytes, const std::string& origin, const std::optional<torch::Device>& device) {
  if (!ExportedProgram::looks_like_package(bytes)) return from_torchscript_bytes(bytes, origin, device);
  const int cuda_index = device && device->is_cuda() && device->has_index() ? device->index() : -1;
  Model model(ExportedProgram::from_bytes(bytes, origin, cuda_index));
  if (device) model.to(*device);
  return model;
}

ExportedProgram& Model::exported() {
  DPT_CHECK(exported_, InvalidArgumentError, "this dpt::Model is not a compiled package");
  return *exported_->program;
}

torch::Tensor Model::train_step(const torch::Tensor& inputs, const torch::Tensor& targets, double grad_scale) {
  return exported().train_step(inputs, targets, grad_scale);
}

Model Model::load_torchscript(const std::string& path, const std::optional<torch::Device>& device) {
  return from_torchscript_bytes(read_file(path), path, device);
}

Model Model::from_torchscript_bytes(const Bytes& bytes, const std::string& origin,
                                    const std::optional<torch::Device>& device) {
  auto module = deserialize_module(bytes, origin, device ? c10::optional<c10::Device>(*device) : c10::nullopt);
  check_has_forward(module, origin);
  return Model(std::move(module));
}

torch::jit::Module& Model::torchscript() {
  DPT_CHECK(script_, InvalidArgumentError, "this dpt::Model holds a C++ torch::nn module, not TorchScript");
  return script_->module;
}

torch::nn::Module& Model::module() {
  DPT_CHECK(cpp_, InvalidArgumentError, "this dpt::Model holds a TorchScript module, not a C++ torch::nn module");
  return *cpp_;
}

std::shared_ptr<torch::nn::Module> Model::module_ptr() const { return cpp_; }

// Note [TorchScript training runs the unoptimized plan]: the graph executor's optimized plan
// turns each differentiable region into one DifferentiableGraph autograd node with symbolic
// gradients (relu's backward becomes gt + type_as + mul), so every parameter in it gets its
// gradient at the same moment, at the end of backward: DDP's buckets could not overlap backward,
// the backward is slower than eager, and eager autocast (AMP) does not apply inside it. With the
// optimizer off, the interpreter runs each op through its eager kernel and autograd records eager
// nodes. The flag is thread-local and read per call, so it is set here, on whatever thread runs a
// training forward (DataParallel's device workers too); evaluation keeps the optimized plan.
// The executor caches its plan per compiled function and keeps an optimized plan once it has one
// (turning the flag off later does not bring eager autograd back): a model that trains runs every
// call unoptimized from prepare_for_training() on, and one that already ran optimized gets a fresh
// compiled copy of its code then (sharing its tensors).
c10::IValue Model::run_script(std::vector<c10::IValue> inputs, const std::string& method) {
  auto& script = *script_;
  if (script.eager_autograd || (script.module.is_training() && torch::GradMode::is_enabled())) {
    torch::jit::GraphOptimizerEnabledGuard eager_autograd(false);
    return script.module.get_method(method)(std::move(inputs));
  }
  script.ran_optimized = true;
  return script.module.get_method(method)(std::move(inputs));
}

bool Model::has_method(const std::string& name) const {
  return script_ && script_->module.find_method(name).has_value();
}

c10::IValue Model::run_method(const std::string& name, std::vector<c10::IValue> inputs) {
  DPT_CHECK(has_method(name), InvalidArgumentError, "the model has no method ", name,
            script_ ? "" : " (a C++ module: only TorchScript models have named methods)");
  return run_script(std::move(inputs), name);
}

void Model::prepare_for_training() {
  if (!script_ || script_->eager_autograd) return;
  script_->eager_autograd = true;
  if (script_->ran_optimized) script_->module = script_->module.clone(/*inplace=*/true);
}

torch::Tensor Model::forward(const torch::Tensor& input) {
  if (cpp_) return cpp_forward_(*cpp_, input);
  if (exported_) {
    DPT_CHECK(!exported_->training || !torch::GradMode::is_enabled(), UnsupportedError, exported_->program->origin(),
              " is a compiled training step: it trains through train_step (the Trainer, `dptrain train`), its "
              "forward is the eval program (eval mode or no_grad)");
    return exported_->program->forward(input);
  }
  auto output = run_script({input});
  DPT_CHECK(output.isTensor(), ModelError, "the TorchScript model's forward returned ", output.tagKind(),
            ", expected a Tensor");
  return output.toTensor();
}

c10::IValue Model::forward(std::vector<c10::IValue> inputs) {
  if (script_) return run_script(std::move(inputs));
  DPT_CHECK(inputs.size() == 1 && inputs[0].isTensor(), InvalidArgumentError,
            "a C++ or compiled dpt::Model takes one tensor input, got ", inputs.size(), " inputs");
  return forward(inputs[0].toTensor());
}

NamedTensorList Model::named_parameters() const {
  NamedTensorList out;
  if (exported_) return exported_->program->parameters();
  if (cpp_) {
    for (const auto& item : cpp_->named_parameters(/*recurse=*/true)) {
      if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
    }
  } else {
    for (const auto& item : script_->module.named_parameters(/*recurse=*/true)) {
      if (item.value.requires_grad()) out.emplace_back(item.name, item.value);
    }
  }
  return out;
}

std::vector<torch::Tensor> Model::parameters() const {
  std::vector<torch::Tensor> out;
  for (auto& named : named_parameters()) out.push_back(named.second);
  return out;
}

NamedTensorList Model::named_buffers() const {
  NamedTensorList out;
  if (exported_) return exported_->program->buffers();
  if (cpp_) {
    for (const auto& item : cpp_->named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  } else {
    for (const auto& item : script_->module.named_buffers(/*recurse=*/true)) out.emplace_back(item.name, item.value);
  }
  return out;
}

void Model::train(bool on) {
  if (on) prepare_for_training();
  if (cpp_) cpp_->train(on);
  else if (script_) script_->module.train(on);
  else exported_->training = on;
}

bool Model::is_training() const {
  if (exported_) return exported_->training;
  return cpp_ ? cpp_->is_training() : script_->module.is_training();
}

void Model::to(torch::Device device) {
  if (exported_) {
    // A compiled program runs where it was compiled for (cuda means this rank's GPU).
    const torch::Device compiled = exported_->program->device();
    const bool same = device.type() == compiled.type() && (!device.has_index() || device == compiled);
    DPT_CHECK(same, UnsupportedError, exported_->program->origin(), " runs on ", compiled.str(), ", not on ",
              device.str(), compiled.type() == device.type() ? ": load it for that device (Model::load(path, device))"
                                                             : ": export it on a machine with that device");
    return;
  }
  if (cpp_) cpp_->to(device);
  else script_->module.to(device);
}

torch::Device Model::device() const {
  auto params = named_parameters();
  if (!params.empty()) return params.front().second.device();
  auto buffers = named_buffers();
  return buffers.empty() ? torch::Device(torch::kCPU) : buffers.front().second.device();
}

Model Model::clone(torch::Device device) const {
  DPT_CHECK(!exported_, UnsupportedError, "a compiled package cannot be replicated (DataParallel): train it with one "
            "process per device (DistributedDataParallel, `dptrain train` under mpirun)");
  if (script_) {
    // jit's deepcopy(device) only moves tensors, so on their own device they stay shared with the
    // original: deep-copy on the spot, then move. Both without grad mode, else every copy is a
    // non-leaf tied to the original's autograd graph that never gets a .grad; the copies then get
    // their originals' requires_grad back, as independent leaves.
    torch::jit::Module copy;
    {
      torch::NoGradGuard no_grad;
      copy = script_->module.deepcopy();
      copy.to(device);
    }
    std::unordered_map<std::string, bool> wants_grad;
    for (const auto& item : script_->module.named_parameters(true)) wants_grad[item.name] = item.value.requires_grad();
    for (const auto& item : copy.named_parameters(true)) item.value.requires_grad_(wants_grad[item.name]);
    Model replica(copy);
    // The copy shares the original's compiled code, and so its executor plans.
    replica.script_->eager_autograd = script_->eager_autograd;
    replica.script_->ran_optimized = script_->ran_optimized;
    return replica;
  }
  try {
    return Model(cpp_->clone(device), cpp_forward_);
  } catch (const c10::Error& e) {
    DPT_THROW(UnsupportedError, "cannot replicate this C++ module: it must derive from torch::nn::Cloneable (",
              e.what_without_backtrace(), ")");
  }
}

NamedTensors Model::state_dict() const {
  NamedTensors state;
  if (exported_) {
    for (auto& [name, parameter] : named_parameters()) state.emplace(name, parameter.detach());
  } else if (cpp_) {
    for (const auto& item : cpp_->named_parameters(true)) state.emplace(item.key(), item.value().detach());
  } else {
    for (const auto& item : script_->module.named_parameters(true)) state.emplace(item.name, item.value.detach());
  }
  for (auto& [name, buffer] : named_buffers()) state.emplace(name, buffer.detach());
  return state;
}

void Model::load_state_dict(const NamedTensors& state, bool strict) {
  torch::NoGradGuard no_grad;
  size_t matched = 0;
  auto assign = [&](const std::string& name, torch::Tensor target) {
    auto found = state.find(name);
    if (found == state.end()) {
      DPT_CHECK(!strict, ModelError, "state dict has no entry for '", name, "'");
      return;
    }
    DPT_CHECK(found->second.sizes() == target.sizes(), ModelError, "state dict entry '", name, "' has shape ",
              found->second.sizes(), ", the model expects ", target.sizes());
    target.copy_(found->second);
    ++matched;
  };
  if (exported_) {
    for (auto& [name, parameter] : named_parameters()) assign(name, parameter);
  } else if (cpp_) {
    for (const auto& item : cpp_->named_parameters(true)) assign(item.key(), item.value());
  } else {
    for (const auto& item : script_->module.named_parameters(true)) assign(item.name, item.value);
  }
  for (auto& [name, buffer] : named_buffers()) assign(name, buffer);
  DPT_CHECK(!strict || matched == state.size(), ModelError, "state dict has ", state.size() - matched,
            " entries the model does not have");
}

}  // namespace dpt
