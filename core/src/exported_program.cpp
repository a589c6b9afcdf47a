#include "dptrain/core/exported_program.h"

#include <nlohmann/json.hpp>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"

namespace dpt {
namespace {

std::string first_line(const std::string& text) {
  const auto start = text.find_first_not_of("\n ");
  if (start == std::string::npos) return text;
  return text.substr(start, text.find('\n', start) - start);
}

std::string what_of(const std::exception& e) {
  auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return first_line(c10_error ? c10_error->what_without_backtrace() : e.what());
}

// The programs' constants by their original names ("model.conv.weight").
std::map<std::string, torch::Tensor> constants_by_name(torch::inductor::AOTIModelPackageLoader& program) {
  auto* runner = program.get_runner();
  const auto fqns = runner->getConstantNamesToOriginalFQNs();
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : runner->extract_constants_map(/*use_inactive=*/false)) {
    auto fqn = fqns.find(name);
    out.emplace(fqn == fqns.end() ? name : fqn->second, tensor);
  }
  return out;
}

constexpr const char* kTrainPrefix = "model.";  // the exporter's wrapper module holds the model here

std::string dtype_name(torch::ScalarType type) { return c10::getDtypeNames(type).first; }

}  // namespace

bool ExportedProgram::looks_like_package(const Bytes& bytes) {
  // A .pt2 package is a zip archive whose records live under "<name>/data/aotinductor/".
  if (!is_zip_archive(bytes)) return false;
  static const std::string marker = "/data/aotinductor/";
  return std::search(bytes.begin(), bytes.end(), marker.begin(), marker.end()) != bytes.end();
}

std::shared_ptr<ExportedProgram> ExportedProgram::load(const std::string& path, int cuda_index) {
  DPT_CHECK(fs::is_regular_file(path), ModelError, path, ": no such package file");
  return std::shared_ptr<ExportedProgram>(new ExportedProgram(path, path, cuda_index));
}

std::shared_ptr<ExportedProgram> ExportedProgram::from_bytes(const Bytes& bytes, const std::string& origin,
                                                             int cuda_index) {
  std::string path = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : std::string("/tmp")) +
                     "/dptrain-package-XXXXXX.pt2";
  const int fd = ::mkstemps(path.data(), 4);
  DPT_CHECK(fd >= 0, IoError, "cannot create a temporary file for ", origin, " in ", fs::parent_path(path));
  ::close(fd);
  std::shared_ptr<ExportedProgram> program;
  try {
    write_file_atomic(path, bytes);
    // The loaders unpack the package into their own directories: the file is not needed after.
    program.reset(new ExportedProgram(path, origin, cuda_index));
  } catch (...) {
    fs::remove_file(path);
    throw;
  }
  fs::remove_file(path);
  return program;
}

ExportedProgram::ExportedProgram(const std::string& path, const std::string& origin, int cuda_index)
    : origin_(origin) {
  const auto index = static_cast<c10::DeviceIndex>(cuda_index);
  try {
    train_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "train", false, 1, index);
    eval_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "eval", false, 1, index);
  } catch (const std::exception& e) {
    DPT_THROW(ModelError, origin_, " is not a training package written by python/dptrain_export (no \"train\" and "
              "\"eval\" programs): ", what_of(e));
  }
  read_metadata(cuda_index);
  take_initial_values();
  bind_constants();
}

ExportedProgram::~ExportedProgram() = default;

void ExportedProgram::read_metadata(int cuda_index) {
  const auto metadata = train_->get_metadata();
  auto get = [&](const std::string& key) {
    auto found = metadata.find(key);
    DPT_CHECK(found != metadata.end(), ModelError, origin_, " lacks '", key,
              "': not a training package written by python/dptrain_export");
    return found->second;
  };
  const std::string format = get("dptrain.format");
  DPT_CHECK(format == "1", ModelError, origin_, " has package format ", format, ", this dptrain reads format 1");
  const std::string exported_with = get("dptrain.torch_version");
  const std::string ours = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                           std::to_string(TORCH_VERSION_PATCH);
  DPT_CHECK(exported_with == ours, ModelError, origin_, " was exported with PyTorch ", exported_with,
            ", dptrain runs libtorch ", ours, ": export it again with PyTorch ", ours,
            " (compiled programs only run on the version that compiled them)");
  if (auto device = metadata.find("AOTI_DEVICE_KEY"); device != metadata.end()) device_ = torch::Device(device->second);
  if (device_.is_cuda()) {
    device_ = torch::Device(torch::kCUDA, cuda_index >= 0 ? static_cast<c10::DeviceIndex>(cuda_index)
                                                          : c10::impl::getDeviceGuardImpl(c10::kCUDA)->getDevice().index());
  }
  loss_ = get("dptrain.loss");
  // Every named loss of the exporter is a mean over the batch; a callable may not be.
  mean_loss_ = std::set<std::string>{"cross_entropy", "nll", "mse", "l1", "smooth_l1", "bce_with_logits"}.count(loss_) > 0;
  dynamic_batch_ = get("dptrain.dynamic_batch") == "1";
  // Written since reduce_gradients (packages before it average after the step: no key).
  if (auto group = metadata.find("dptrain.gradient_group"); group != metadata.end()) gradient_group_ = group->second;
  try {
    for (const auto& name : nlohmann::json::parse(get("dptrain.parameters"))) {
      parameters_.emplace_back(name.get<std::string>(), torch::Tensor());
    }
    for (const auto& name : nlohmann::json::parse(get("dptrain.buffers"))) {
      buffers_.emplace_back(name.get<std::string>(), torch::Tensor());
    }
    auto spec = [](const nlohmann::json& j) { return Spec{j.at("shape").get<std::vector<int64_t>>(), j.at("dtype")}; };
    input_spec_ = spec(nlohmann::json::parse(get("dptrain.inputs")));
    target_spec_ = spec(nlohmann::json::parse(get("dptrain.targets")));
    auto index_of = [&](const auto& list, const std::string& name) -> size_t {
      for (size_t i = 0; i < list.size(); ++i) {
        if (list[i].first == name) return i;
      }
      DPT_THROW(ModelError, origin_, ": the training step outputs '", name, "', which the package does not list");
    };
    for (const auto& entry : nlohmann::json::parse(get("dptrain.outputs"))) {
      const std::string kind = entry.at(0), name = entry.at(1);
      if (kind == "loss") outputs_.push_back({Output::Kind::Loss, 0});
      if (kind == "grad") outputs_.push_back({Output::Kind::Gradient, index_of(parameters_, name)});
    }
    if (auto mutated = metadata.find("dptrain.mutated_buffers"); mutated != metadata.end()) {
      mutated_buffers_ = nlohmann::json::parse(mutated->second).get<std::vector<std::string>>();
    }
  } catch (const nlohmann::json::exception& e) {
    DPT_THROW(ModelError, origin_, " has unreadable dptrain metadata: ", e.what());
  }
  const auto losses = std::count_if(outputs_.begin(), outputs_.end(), [](const Output& o) { return o.kind == Output::Kind::Loss; });
  DPT_CHECK(losses == 1, ModelError, origin_, "'s training step has ", losses, " loss outputs, expected exactly one");
}

void ExportedProgram::take_initial_values() {
  const auto train = constants_by_name(*train_);
  const auto eval = constants_by_name(*eval_);
  auto initial = [&](const std::string& name) {
    if (auto found = train.find(kTrainPrefix + name); found != train.end()) return found->second;
    if (auto found = eval.find(name); found != eval.end()) return found->second;
    DPT_THROW(ModelError, origin_, " holds no value for '", name, "'");
  };
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : parameters_) tensor = initial(name).detach().clone().requires_grad_(true);
  for (auto& [name, tensor] : buffers_) tensor = initial(name).detach().clone();
}

void ExportedProgram::bind_constants() {
  // Each program gets the tensors it has constants for, by the names it knows them by.
  auto bind = [this](torch::inductor::AOTIModelPackageLoader& program, const std::string& prefix) {
    const auto fqns = program.get_runner()->getConstantNamesToOriginalFQNs();
    std::set<std::string> known;
    for (const auto& entry : fqns) known.insert(entry.second);
    std::unordered_map<std::string, torch::Tensor> constants;
    for (const auto* list : {&parameters_, &buffers_}) {
      for (const auto& [name, tensor] : *list) {
        if (known.count(prefix + name)) constants.emplace(prefix + name, tensor);
      }
    }
    program.load_constants(constants, /*use_inactive=*/false, /*check_full_update=*/false, /*user_managed=*/true);
  };
  try {
    bind(*train_, kTrainPrefix);
    bind(*eval_, "");
  } catch (const std::exception& e) {
    DPT_THROW(ModelError, origin_, ": its programs do not take dptrain's parameters: ", what_of(e));
  }
}

void ExportedProgram::check_batch(const torch::Tensor& tensor, const Spec& spec, const char* what) const {
  const bool shape_fits = tensor.dim() == static_cast<int64_t>(spec.shape.size()) + 1 &&
                          std::equal(spec.shape.begin(), spec.shape.end(), tensor.sizes().begin() + 1);
  DPT_CHECK(shape_fits && dtype_name(tensor.scalar_type()) == spec.dtype, InvalidArgumentError, origin_,
            " takes ", what, " of shape [batch, ", c10::Join(", ", spec.shape), "] and dtype ", spec.dtype,
            ", the data gives [batch, ", c10::Join(", ", tensor.sizes().slice(std::min<size_t>(1, tensor.dim()))), "] ",
            dtype_name(tensor.scalar_type()),
            " (export the package with example batches shaped like the data)");
  DPT_CHECK(tensor.device() == device_, InvalidArgumentError, origin_, " was compiled for ", device_.str(),
            ", the ", what, " are on ", tensor.device().str());
}

torch::Tensor ExportedProgram::train_step(const torch::Tensor& inputs, const torch::Tensor& targets, double grad_scale) {
  check_batch(inputs, input_spec_, "inputs");
  check_batch(targets, target_spec_, "targets");
  torch::NoGradGuard no_grad;
  torch::Tensor batch_inputs = inputs, batch_targets = targets;
  if (inputs.size(0) == 1 && dynamic_batch_) {
    // Exported with a batch dimension of at least 2 (torch.export specializes a size of 1). A
    // sample twice has the same mean loss and gradient, unless the step computes batch
    // statistics (BatchNorm) or the loss is not a known mean.
    DPT_CHECK(mutated_buffers_.empty() && mean_loss_, InvalidArgumentError, origin_,
              " cannot train on a batch of 1 sample (its step computes batch statistics or its loss is custom): "
              "choose a batch size that leaves no single-sample batch");
    batch_inputs = torch::cat({inputs, inputs});
    batch_targets = torch::cat({targets, targets});
  }
  std::vector<torch::Tensor> results;
  try {
    results = train_->run({batch_inputs.contiguous(), batch_targets.contiguous()});
  } catch (const std::exception& e) {
    DPT_THROW(ModelError, origin_, ": the training step failed on a batch of ", inputs.size(0), ": ", what_of(e));
  }
  DPT_CHECK(results.size() == outputs_.size(), ModelError, origin_, ": the training step returned ", results.size(),
            " outputs, its metadata lists ", outputs_.size());
  torch::Tensor loss;
  for (size_t i = 0; i < results.size(); ++i) {
    const Output& output = outputs_[i];
    if (output.kind == Output::Kind::Loss) {
      loss = results[i];
    } else {
      torch::Tensor& param = parameters_[output.index].second;
      // The program's outputs are fresh tensors of each run: kept as they are, no copy.
      torch::Tensor scaled = grad_scale == 1.0 ? results[i] : results[i] * grad_scale;
      if (param.grad().defined()) {
        param.mutable_grad().add_(scaled);
      } else {
        param.mutable_grad() = std::move(scaled);
      }
    }
  }
  return loss;
}

torch::Tensor ExportedProgram::forward(const torch::Tensor& inputs) {
  check_batch(inputs, input_spec_, "inputs");
  torch::NoGradGuard no_grad;
  try {
    // A single sample is run twice (the programs take batches of at least 2); eval mode computes
    // each sample on its own, so the first copy's output is the sample's.
    if (inputs.size(0) == 1 && dynamic_batch_) return eval_->run({torch::cat({inputs, inputs})}).at(0).narrow(0, 0, 1);
    return eval_->run({inputs.contiguous()}).at(0);
  } catch (const std::exception& e) {
    DPT_THROW(ModelError, origin_, ": the eval program failed on a batch of ", inputs.size(0), ": ", what_of(e));
  }
}

}  // namespace dpt
