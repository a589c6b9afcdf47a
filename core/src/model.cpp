#include "dptrain/core/model.h"

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

Model::Model(torch::jit::Module module) : script_(std::move(module)) {
  check_has_forward(*script_, "the given module");
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
  return *script_;
}

torch::nn::Module& Model::module() {
  DPT_CHECK(cpp_, InvalidArgumentError, "this dpt::Model holds a TorchScript module, not a C++ torch::nn module");
  return *cpp_;
}

std::shared_ptr<torch::nn::Module> Model::module_ptr() const { return cpp_; }

torch::Tensor Model::forward(const torch::Tensor& input) {
  if (cpp_) return cpp_forward_(*cpp_, input);
  auto output = script_->forward({input});
  DPT_CHECK(output.isTensor(), ModelError, "the TorchScript model's forward returned ", output.tagKind(),
            ", expected a Tensor");
  return output.toTensor();
}

c10::IValue Model::forward(std::vector<c10::IValue> inputs) {
  if (script_) return script_->forward(std::move(inputs));
  DPT_CHECK(inputs.size() == 1 && inputs[0].isTensor(), InvalidArgumentError,
            "a C++ dpt::Model takes one tensor input, got ", inputs.size(), " inputs");
  return cpp_forward_(*cpp_, inputs[0].toTensor());
}

NamedTensorList Model::named_parameters() const {
  NamedTensorList out;
  if (cpp_) {
    for (const auto& item : cpp_->named_parameters(/*recurse=*/true)) {
      if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
    }
  } else {
    for (const auto& item : script_->named_parameters(/*recurse=*/true)) {
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
  if (cpp_) {
    for (const auto& item : cpp_->named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  } else {
    for (const auto& item : script_->named_buffers(/*recurse=*/true)) out.emplace_back(item.name, item.value);
  }
  return out;
}

void Model::train(bool on) {
  if (cpp_) cpp_->train(on);
  else script_->train(on);
}

bool Model::is_training() const { return cpp_ ? cpp_->is_training() : script_->is_training(); }

void Model::to(torch::Device device) {
  if (cpp_) cpp_->to(device);
  else script_->to(device);
}

torch::Device Model::device() const {
  auto params = named_parameters();
  if (!params.empty()) return params.front().second.device();
  auto buffers = named_buffers();
  return buffers.empty() ? torch::Device(torch::kCPU) : buffers.front().second.device();
}

Model Model::clone(torch::Device device) const {
  if (script_) {
    // jit's deepcopy(device) only moves tensors, so on their own device they stay shared with the
    // original: deep-copy on the spot, then move. Both without grad mode, else every copy is a
    // non-leaf tied to the original's autograd graph that never gets a .grad; the copies then get
    // their originals' requires_grad back, as independent leaves.
    torch::jit::Module copy;
    {
      torch::NoGradGuard no_grad;
      copy = script_->deepcopy();
      copy.to(device);
    }
    std::unordered_map<std::string, bool> wants_grad;
    for (const auto& item : script_->named_parameters(true)) wants_grad[item.name] = item.value.requires_grad();
    for (const auto& item : copy.named_parameters(true)) item.value.requires_grad_(wants_grad[item.name]);
    return Model(copy);
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
  if (cpp_) {
    for (const auto& item : cpp_->named_parameters(true)) state.emplace(item.key(), item.value().detach());
  } else {
    for (const auto& item : script_->named_parameters(true)) state.emplace(item.name, item.value.detach());
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
  if (cpp_) {
    for (const auto& item : cpp_->named_parameters(true)) assign(item.key(), item.value());
  } else {
    for (const auto& item : script_->named_parameters(true)) assign(item.name, item.value);
  }
  for (auto& [name, buffer] : named_buffers()) assign(name, buffer);
  DPT_CHECK(!strict || matched == state.size(), ModelError, "state dict has ", state.size() - matched,
            " entries the model does not have");
}

}  // namespace dpt
