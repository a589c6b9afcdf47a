// The backend-independent parts of Communicator: the default fused allreduce and the object
// collectives, all built from the virtual tensor collectives so every backend gets them.
#include "dptrain/parallel/communicator.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// The result of the default allreduce_coalesced_async: the fused buffer is copied back into the
// caller's tensors by the first wait() (is_completed() says when that will not block).
class CoalescedWork final : public Work {
 public:
  CoalescedWork(WorkPtr inner, torch::Tensor fused, std::vector<torch::Tensor> targets)
      : inner_(std::move(inner)), fused_(std::move(fused)), targets_(std::move(targets)) {}

  void wait() override {
    inner_->wait();
    if (copied_) return;
    int64_t offset = 0;
    for (auto& target : targets_) {
      target.view(-1).copy_(fused_.slice(0, offset, offset + target.numel()));
      offset += target.numel();
    }
    copied_ = true;
  }
  bool is_completed() override { return inner_->is_completed(); }

 private:
  WorkPtr inner_;
  torch::Tensor fused_;
  std::vector<torch::Tensor> targets_;
  bool copied_ = false;
};

torch::Tensor bytes_to_tensor(const Bytes& bytes) {
  auto tensor = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(tensor.data_ptr(), bytes.data(), bytes.size());
  return tensor;
}

Bytes tensor_to_bytes(const torch::Tensor& tensor, int64_t count) {
  auto cpu = tensor.to(torch::kCPU).contiguous();
  Bytes bytes(static_cast<size_t>(count));
  if (count > 0) std::memcpy(bytes.data(), cpu.data_ptr(), static_cast<size_t>(count));
  return bytes;
}

}  // namespace

void Communicator::check_device(const torch::Tensor& tensor, const std::string& what) const {
  DPT_CHECK(accepts_device(tensor.device()), InvalidArgumentError, backend_name(), " rank ", rank(), "/", size(), ": ",
            what, " is on ", tensor.device().str(), " but this communicator works on ", device().str(),
            "; create the tensors of collectives on communicator->device()");
}

WorkPtr Communicator::allreduce_coalesced_async(std::vector<torch::Tensor>& tensors, ReduceOp op) {
  DPT_CHECK(!tensors.empty(), InvalidArgumentError, backend_name(), " rank ", rank(),
            ": allreduce_coalesced: the tensor list is empty");
  std::vector<torch::Tensor> flat;
  flat.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    DPT_CHECK(tensors[i].scalar_type() == tensors[0].scalar_type() && tensors[i].device() == tensors[0].device(),
              InvalidArgumentError, backend_name(), " rank ", rank(), ": allreduce_coalesced: tensor ", i,
              " differs from tensor 0 in dtype or device");
    DPT_CHECK(tensors[i].is_contiguous(), InvalidArgumentError, backend_name(), " rank ", rank(),
              ": allreduce_coalesced: tensor ", i, " is not contiguous");
    flat.push_back(tensors[i].view(-1));
  }
  torch::Tensor fused = torch::cat(flat);
  auto work = allreduce_async(fused, op);
  return std::make_shared<CoalescedWork>(std::move(work), fused, tensors);
}

// Root builds the payload with `make`; if that throws, the other ranks get length -1 and throw a
// CommunicationError naming the root's failure instead of waiting for bytes that never come.
namespace {

Bytes broadcast_payload(Communicator& comm, int root, const std::string& what, const std::function<Bytes()>& make) {
  DPT_CHECK(root >= 0 && root < comm.size(), InvalidArgumentError, comm.backend_name(), " rank ", comm.rank(), ": ",
            what, ": root ", root, " is not in [0, ", comm.size(), ")");
  Bytes bytes;
  std::exception_ptr root_error;
  if (comm.rank() == root) {
    try {
      bytes = make();
    } catch (...) {
      root_error = std::current_exception();
    }
  }
  int64_t announced = root_error ? -1 : static_cast<int64_t>(bytes.size());
  auto length = torch::full({1}, comm.rank() == root ? announced : 0, torch::kInt64).to(comm.device());
  comm.broadcast(length, root);
  const int64_t count = length.to(torch::kCPU).item<int64_t>();
  if (root_error) std::rethrow_exception(root_error);
  DPT_CHECK(count >= 0, CommunicationError, comm.backend_name(), " rank ", comm.rank(), ": ", what,
            ": rank ", root, " failed to produce it (see rank ", root, "'s error)");
  torch::Tensor buffer =
      comm.rank() == root ? bytes_to_tensor(bytes).to(comm.device())
                          : torch::empty({count}, torch::TensorOptions(torch::kUInt8).device(comm.device()));
  comm.broadcast(buffer, root);
  if (comm.rank() == root) return bytes;
  return tensor_to_bytes(buffer, count);
}

}  // namespace

Bytes Communicator::broadcast_bytes(const Bytes& bytes, int root) {
  return broadcast_payload(*this, root, "broadcast_bytes", [&] { return bytes; });
}

std::vector<Bytes> Communicator::allgather_bytes(const Bytes& bytes) {
  auto length = torch::full({1}, static_cast<int64_t>(bytes.size()), torch::kInt64).to(device());
  auto lengths = torch::empty({size()}, torch::TensorOptions(torch::kInt64).device(device()));
  allgather(length, lengths);
  auto lengths_cpu = lengths.to(torch::kCPU);
  const int64_t longest = lengths_cpu.max().item<int64_t>();
  // Every rank sends `longest` bytes (MPI/NCCL allgather takes one count); the padding is dropped.
  auto padded = torch::zeros({longest}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(padded.data_ptr(), bytes.data(), bytes.size());
  padded = padded.to(device());
  auto gathered = torch::empty({longest * size()}, torch::TensorOptions(torch::kUInt8).device(device()));
  allgather(padded, gathered);
  auto gathered_cpu = gathered.to(torch::kCPU);
  std::vector<Bytes> result(static_cast<size_t>(size()));
  const char* base = static_cast<const char*>(gathered_cpu.data_ptr());
  for (int r = 0; r < size(); ++r) {
    const int64_t n = lengths_cpu[r].item<int64_t>();
    result[static_cast<size_t>(r)].assign(base + r * longest, base + r * longest + n);
  }
  return result;
}

torch::Tensor Communicator::broadcast_tensor(const torch::Tensor& tensor, int root) {
  auto bytes = broadcast_payload(*this, root, "broadcast_tensor", [&] {
    DPT_CHECK(tensor.defined(), InvalidArgumentError, backend_name(), " rank ", rank(),
              ": broadcast_tensor: the root passed an undefined tensor");
    return serialize_tensor(tensor.detach().to(torch::kCPU));
  });
  auto result = deserialize_tensor(bytes);
  return tensor.defined() ? result.to(tensor.device()) : result;
}

NamedTensors Communicator::broadcast_named_tensors(const NamedTensors& tensors, int root) {
  auto bytes = broadcast_payload(*this, root, "broadcast_named_tensors", [&] {
    NamedTensors on_cpu;
    for (const auto& [name, t] : tensors) on_cpu.emplace(name, t.detach().to(torch::kCPU));
    return serialize_named_tensors(on_cpu);
  });
  return deserialize_named_tensors(bytes,
                                   detail::concat("state dict broadcast from rank ", root));
}

torch::jit::Module Communicator::broadcast_module(const torch::jit::Module* module, int root,
                                                  const c10::optional<c10::Device>& device) {
  auto bytes = broadcast_payload(*this, root, "broadcast_module", [&] {
    DPT_CHECK(module != nullptr, InvalidArgumentError, backend_name(), " rank ", rank(),
              ": broadcast_module: the root passed no module");
    return serialize_module(*module);
  });
  return deserialize_module(bytes, detail::concat("the module broadcast from rank ", root),
                            device);
}

}  // namespace dpt
