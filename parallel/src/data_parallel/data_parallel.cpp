#include "dptrain/parallel/data_parallel/data_parallel.h"

#include <ATen/ThreadLocalState.h>

#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include "device_workers.h"
#include "dptrain/core/config.h"
#include "dptrain/core/error.h"
#include "dptrain/parallel/data_parallel/replicate.h"
#include "dptrain/parallel/data_parallel/scatter_gather.h"

#if DPTRAIN_HAVE_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace dpt {
namespace {

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;  // a handle on the module's own TensorImpl (not detached)
};

// The defined tensors of a TorchScript module's named list, or of a torch::nn module's.
template <typename ScriptList>
std::vector<NamedTensor> defined_in_script(const ScriptList& items) {
  std::vector<NamedTensor> out;
  for (const auto& item : items) {
    if (item.value.defined()) out.push_back({item.name, item.value});
  }
  return out;
}

std::vector<NamedTensor> defined_in_module(const torch::OrderedDict<std::string, torch::Tensor>& items) {
  std::vector<NamedTensor> out;
  for (const auto& item : items) {
    if (item.value().defined()) out.push_back({item.key(), item.value()});
  }
  return out;
}

// Every parameter, frozen ones included (they must be copied to the replicas as well).
std::vector<NamedTensor> all_parameters(Model& model) {
  return model.is_torchscript() ? defined_in_script(model.torchscript().named_parameters(/*recurse=*/true))
                                : defined_in_module(model.module().named_parameters(/*recurse=*/true));
}

std::vector<NamedTensor> all_buffers(Model& model) {
  return model.is_torchscript() ? defined_in_script(model.torchscript().named_buffers(/*recurse=*/true))
                                : defined_in_module(model.module().named_buffers(/*recurse=*/true));
}

// Copies the original's values into a replica tensor, every forward. Two choices:
//  - no "skip unchanged tensors" test: libtorch's optimizers update parameters through .data(),
//    which does not bump the version counter, and BatchNorm updates its running statistics inside
//    the kernel, so there is no cheap reliable sign that a tensor changed;
//  - the copy goes through .data() and so does not bump the replica's version counter either. The
//    replica then behaves like the original itself, whose tensors the graph saved: two forwards
//    and one backward work (copying the same values again changes nothing), and a change to the
//    original between forward and backward shows in both alike.
void refresh(const torch::Tensor& source, const torch::Tensor& target) {
  target.data().copy_(source.detach(), /*non_blocking=*/true);
}

// A deep copy of `original` on `device`. Not Model::clone for TorchScript: jit's
// Module::deepcopy(device) moves tensors with .to(device), which returns the very same tensor when
// it already is on `device`, so a "copy" on the CPU would share every parameter with the original.
Model make_replica(Model& original, torch::Device device) {
  torch::NoGradGuard no_grad;
  if (!original.is_torchscript()) return original.clone(device);
  auto copy = original.torchscript().deepcopy();
  copy.to(device);
  return Model(std::move(copy));
}

struct Replica {
  Model model;
  std::vector<NamedTensor> parameters;  // same order as the original's
  std::vector<NamedTensor> buffers;
};

std::vector<torch::Device> resolve_devices(std::vector<torch::Device> devices) {
  const auto cuda_count = static_cast<int64_t>(torch::cuda::device_count());
  if (devices.empty()) {
    DPT_CHECK(cuda_count > 0, InvalidArgumentError,
              "DataParallel: no device list given and no CUDA device is visible; pass the devices, e.g. "
              "{torch::kCPU, torch::kCPU} to run replicas on CPU threads");
    for (int64_t i = 0; i < cuda_count; ++i) devices.emplace_back(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
  }
  for (auto& device : devices) {
    DPT_CHECK(device.is_cpu() || device.is_cuda(), UnsupportedError, "DataParallel: device ", device,
              " is not supported; use CPU or CUDA devices");
    DPT_CHECK(device.type() == devices.front().type(), InvalidArgumentError, "DataParallel: the devices mix ",
              devices.front(), " and ", device, "; use devices of one type");
    if (device.is_cpu()) {
      device = torch::Device(torch::kCPU);
      continue;
    }
#if DPTRAIN_HAVE_CUDA
    DPT_CHECK(device.has_index(), InvalidArgumentError, "DataParallel: device ", device,
              " needs an index, e.g. cuda:0");
    DPT_CHECK(device.index() < cuda_count, InvalidArgumentError, "DataParallel: device ", device, " does not exist (",
              cuda_count, " CUDA device(s) visible)");
#else
    DPT_THROW(UnsupportedError, "DataParallel: device ", device, " requested, but this build of dptrain has no CUDA");
#endif
  }
  return devices;
}

std::string describe_exception(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

struct DataParallel::Impl {
  Model original;
  std::vector<torch::Device> devices;
  torch::Device output_device;
  std::vector<Replica> replicas;  // replicas[0] is the original itself, on devices[0]
  std::unique_ptr<detail::DeviceWorkers> workers;
  std::mutex forward_mutex;
  size_t last_replica_count = 0;

  Impl(Model model, std::vector<torch::Device> requested, std::optional<torch::Device> output)
      : original(std::move(model)),
        devices(resolve_devices(std::move(requested))),
        output_device(output.value_or(devices.front())) {
    original.prepare_for_training();  // before the replicas copy it (see dpt::Model)
    replicas.push_back(Replica{original, all_parameters(original), all_buffers(original)});
    check_original_placement();
    for (size_t k = 1; k < devices.size(); ++k) {
      Replica replica{make_replica(original, devices[k]), {}, {}};
      replica.parameters = all_parameters(replica.model);
      replica.buffers = all_buffers(replica.model);
      DPT_CHECK(replica.parameters.size() == replicas[0].parameters.size() &&
                    replica.buffers.size() == replicas[0].buffers.size(),
                ModelError, "DataParallel: the copy of the module for ", devices[k], " has ", replica.parameters.size(),
                " parameters and ", replica.buffers.size(), " buffers, the module ", replicas[0].parameters.size(),
                " and ", replicas[0].buffers.size(),
                " (a module whose clone() differs from itself cannot be replicated)");
      auto check_not_shared = [&](const std::vector<NamedTensor>& copies, const std::vector<NamedTensor>& sources) {
        for (size_t i = 0; i < copies.size(); ++i) {
          DPT_ASSERT(!copies[i].tensor.is_alias_of(sources[i].tensor), "the replica for ", devices[k], " shares '",
                     sources[i].name, "' with the original");
        }
      };
      check_not_shared(replica.parameters, replicas[0].parameters);
      check_not_shared(replica.buffers, replicas[0].buffers);
      for (auto& parameter : replica.parameters) unlink_replica_tensor(parameter.tensor);
      replicas.push_back(std::move(replica));
    }
    workers = std::make_unique<detail::DeviceWorkers>(devices.size());
  }

  void check_original_placement() const {
    auto check = [&](const std::vector<NamedTensor>& tensors, const char* kind) {
      for (const auto& named : tensors) {
        DPT_CHECK(named.tensor.device() == devices.front(), InvalidArgumentError, "DataParallel: ", kind, " '",
                  named.name, "' is on ", named.tensor.device(),
                  ", but the module must be on devices[0] = ", devices.front(), " (call model.to(", devices.front(),
                  ") before wrapping it, as in PyTorch)");
      }
    };
    check(replicas[0].parameters, "parameter");
    check(replicas[0].buffers, "buffer");
  }

  // Note [DataParallel gradients] (replicate.h): replicas 1..count-1 reach the original
  // parameters in autograd. Frozen parameters, and every parameter when gradients are off, are
  // plain leaves that do not require grad.
  void link_gradients(size_t count) {
    const bool grad_enabled = torch::GradMode::is_enabled();
    std::vector<torch::Tensor> originals;
    std::vector<std::vector<torch::Tensor>> linked(count - 1);
    const auto& source = replicas[0].parameters;
    for (size_t i = 0; i < source.size(); ++i) {
      const bool trainable = grad_enabled && source[i].tensor.requires_grad();
      if (trainable) originals.push_back(source[i].tensor);
      for (size_t k = 1; k < count; ++k) {
        if (trainable)
          linked[k - 1].push_back(replicas[k].parameters[i].tensor);
        else
          unlink_replica_tensor(replicas[k].parameters[i].tensor);
      }
    }
    if (!originals.empty()) link_replica_gradients(originals, linked);
  }

  void refresh_replica(size_t k) {
    torch::NoGradGuard no_grad;
    auto& replica = replicas[k];
    const auto& source = replicas[0];
    for (size_t i = 0; i < source.parameters.size(); ++i) {
      refresh(source.parameters[i].tensor, replica.parameters[i].tensor);
    }
    for (size_t i = 0; i < source.buffers.size(); ++i) {
      refresh(source.buffers[i].tensor, replica.buffers[i].tensor);
    }
  }

  void rethrow_first(const std::vector<std::exception_ptr>& errors, const char* stage) const {
    for (size_t k = 0; k < errors.size(); ++k) {
      if (!errors[k]) continue;
      DPT_THROW(ModelError, "DataParallel: replica ", k, " on ", devices[k], " failed ", stage, ": ",
                describe_exception(errors[k]));
    }
  }

  // Runs body(k) for k < count, replica k on its own thread with the caller's thread-local
  // state (grad mode, inference mode, autocast, ...) and, on CUDA, the caller's current stream of
  // its device, so work is ordered with what the caller queued before and after.
  void run_on_replicas(size_t count, size_t first, const std::function<void(size_t)>& body, const char* stage) {
    at::ThreadLocalState caller_state;
#if DPTRAIN_HAVE_CUDA
    std::vector<c10::cuda::CUDAStream> caller_streams;
    if (devices.front().is_cuda()) {
      for (size_t k = 0; k < count; ++k) caller_streams.push_back(c10::cuda::getCurrentCUDAStream(devices[k].index()));
    }
#endif
    std::vector<std::function<void()>> tasks(count);
    for (size_t k = first; k < count; ++k) {
      tasks[k] = [&, k] {
        at::ThreadLocalStateGuard state_guard(caller_state);
#if DPTRAIN_HAVE_CUDA
        std::optional<c10::cuda::CUDAGuard> device_guard;
        std::optional<c10::cuda::CUDAMultiStreamGuard> stream_guard;
        if (devices[k].is_cuda()) {
          device_guard.emplace(devices[k].index());
          stream_guard.emplace(caller_streams);
        }
#endif
        body(k);
      };
    }
    rethrow_first(workers->run(tasks), stage);
  }

  c10::IValue forward(std::vector<c10::IValue> inputs) { return gather(run("forward", std::move(inputs)), output_device); }

  // Runs `method` on the replicas, each on its piece of `inputs`; the outputs in replica order.
  std::vector<c10::IValue> run(const std::string& method, std::vector<c10::IValue> inputs,
                               std::vector<int64_t>* piece_sizes = nullptr) {
    std::lock_guard<std::mutex> lock(forward_mutex);
    check_original_placement();
    auto pieces = scatter(inputs, devices);
    const size_t count = pieces.size();
    last_replica_count = count;
    const bool training = original.is_training();
    for (size_t k = 1; k < count; ++k) {
      if (replicas[k].model.is_training() != training) replicas[k].model.train(training);
    }
    if (count > 1) {
      link_gradients(count);
      // All copies finish before any replica runs: replica 0 updates the original's buffers.
      run_on_replicas(
          count, 1, [&](size_t k) { refresh_replica(k); }, "while copying the parameters");
    }
    if (piece_sizes) {
      for (const auto& piece : pieces) {
        piece_sizes->push_back(!piece.empty() && piece[0].isTensor() ? piece[0].toTensor().size(0) : 0);
      }
    }
    std::vector<c10::IValue> outputs(count);
    run_on_replicas(
        count, 0,
        [&](size_t k) {
          outputs[k] = method == "forward" ? replicas[k].model.forward(std::move(pieces[k]))
                                           : replicas[k].model.run_method(method, std::move(pieces[k]));
        },
        method == "forward" ? "in forward" : "in a model method");
    return outputs;
  }
};

DataParallel::DataParallel(Model model, std::vector<torch::Device> devices, std::optional<torch::Device> output_device)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(devices), output_device)) {}
DataParallel::~DataParallel() = default;
DataParallel::DataParallel(DataParallel&&) noexcept = default;
DataParallel& DataParallel::operator=(DataParallel&&) noexcept = default;

torch::Tensor DataParallel::forward(const torch::Tensor& input) {
  auto output = impl_->forward({input});
  DPT_CHECK(output.isTensor(), ModelError, "DataParallel: the module returned ", output.tagKind(),
            ", expected a Tensor; use forward(std::vector<c10::IValue>)");
  return output.toTensor();
}

c10::IValue DataParallel::forward(std::vector<c10::IValue> inputs) {
  return impl_->forward(std::move(inputs));
}

c10::IValue DataParallel::call(const std::string& method, std::vector<c10::IValue> inputs) {
  return gather(impl_->run(method, std::move(inputs)), impl_->output_device);
}

torch::Tensor DataParallel::training_step(const torch::Tensor& inputs, const torch::Tensor& targets) {
  std::vector<int64_t> sizes;
  auto losses = impl_->run("training_step", {inputs, targets}, &sizes);
  // Each replica's mean loss over its piece, weighted by the piece: the mean over the whole batch.
  torch::Tensor total;
  for (size_t k = 0; k < losses.size(); ++k) {
    DPT_CHECK(losses[k].isTensor() && losses[k].toTensor().numel() == 1, ModelError,
              "DataParallel: training_step must return the loss as a one-element tensor (replica ", k, ")");
    auto weighted = losses[k].toTensor().reshape({}).to(impl_->output_device) * static_cast<double>(sizes[k]);
    total = total.defined() ? total + weighted : weighted;
  }
  return total / static_cast<double>(inputs.size(0));
}

Model& DataParallel::module() {
  return impl_->original;
}
const std::vector<torch::Device>& DataParallel::devices() const {
  return impl_->devices;
}
torch::Device DataParallel::output_device() const {
  return impl_->output_device;
}
size_t DataParallel::last_replica_count() const {
  return impl_->last_replica_count;
}

void DataParallel::train(bool on) {
  for (auto& replica : impl_->replicas) replica.model.train(on);
}

}  // namespace dpt
