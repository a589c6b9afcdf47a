// Communicator's object collectives: bytes, tensors, state dicts and modules, built from the tensor
// collectives so every backend has them.
#include "dptrain/parallel/comm/communicator.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

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
