// Bytes in, bytes out for everything that crosses a process boundary or lands in a file:
// tensors, named tensor maps (state dicts) and whole TorchScript modules, all through libtorch's
// own serialization so PyTorch reads what we write.
#pragma once

#include <torch/torch.h>
#include <torch/script.h>

#include <map>
#include <string>
#include <vector>

namespace dpt {

using Bytes = std::vector<char>;
using NamedTensors = std::map<std::string, torch::Tensor>;  // ordered: identical bytes on every rank

Bytes serialize_ivalue(const c10::IValue& value);
c10::IValue deserialize_ivalue(const Bytes& bytes, const std::string& what = "object");

Bytes serialize_tensor(const torch::Tensor& tensor);
torch::Tensor deserialize_tensor(const Bytes& bytes);

Bytes serialize_named_tensors(const NamedTensors& tensors);
NamedTensors deserialize_named_tensors(const Bytes& bytes, const std::string& what = "state dict");

Bytes serialize_module(const torch::jit::Module& module);
// `origin` names where the bytes came from (a file, "rank 0") for the error message.
torch::jit::Module deserialize_module(const Bytes& bytes, const std::string& origin,
                                      const c10::optional<c10::Device>& device = c10::nullopt);

// Whole-file helpers; errors name the file.
Bytes read_file(const std::string& path);
// Atomic: writes path.tmp.<pid>, fsyncs it, renames over path, fsyncs the directory. A crash at any
// moment leaves either the old file or the new one, never half of one.
void write_file_atomic(const std::string& path, const Bytes& bytes);

// 64-bit FNV-1a, used as the integrity checksum of checkpoints.
uint64_t checksum64(const char* data, size_t size);

}  // namespace dpt
