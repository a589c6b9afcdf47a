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
// torch.save's format for Python's eyes: plain dicts, lists and tuples without TorchScript's type
// tags (torch::pickle_save tags them with torch.jit._pickle.restore_type_tag, which
// torch.load(weights_only=True), PyTorch's default, refuses). deserialize_ivalue reads it back.
Bytes save_for_pytorch(const c10::IValue& value);
// Reads a torch.save file, also one written by a Python script: plain containers, tensors, and the
// collections.OrderedDict of a state_dict() (a plain dict here; its `_metadata` dropped), which
// libtorch's own reader turns into None. DataError naming `origin`.
c10::IValue load_torch_save(const Bytes& bytes, const std::string& origin);
// The pickle-program rewrite behind load_torch_save (python_pickle.cpp), exposed for tests.
std::string rewrite_python_pickle(const std::string& program, const std::string& origin);

Bytes serialize_tensor(const torch::Tensor& tensor);
torch::Tensor deserialize_tensor(const Bytes& bytes);

Bytes serialize_named_tensors(const NamedTensors& tensors);
NamedTensors deserialize_named_tensors(const Bytes& bytes, const std::string& what = "state dict");

// A loaded state_dict (a dict of name -> tensor) as NamedTensors; DataError naming `what` when
// `value` is not one.
NamedTensors named_tensors_from(const c10::IValue& value, const std::string& what);
// The dict that torch.load / model.load_state_dict expect, tensors detached and on the CPU, in the
// order of `tensors` (any range of (name, tensor) pairs).
template <typename NamedRange>
c10::impl::GenericDict state_dict_for_pytorch(const NamedRange& tensors) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& [name, tensor] : tensors) dict.insert(name, tensor.detach().cpu());
  return dict;
}

Bytes serialize_module(const torch::jit::Module& module);
// `origin` names where the bytes came from (a file, "rank 0") for the error message.
torch::jit::Module deserialize_module(const Bytes& bytes, const std::string& origin,
                                      const c10::optional<c10::Device>& device = c10::nullopt);

// Whole-file helpers; errors name the file. Only regular files are read (a FIFO or device among
// the inputs is an IoError, never a hang), exactly the size the file has when opened.
Bytes read_file(const std::string& path);
// read_file, refusing a file of more than `max_bytes` (0: no limit); `what` ("--config") leads
// the error message.
Bytes read_file_bounded(const std::string& path, uint64_t max_bytes, const std::string& what);
// Atomic: writes path.tmp.<pid>, fsyncs it, renames over path, fsyncs the directory. A crash at any
// moment leaves either the old file or the new one, never half of one.
void write_file_atomic(const std::string& path, const Bytes& bytes);

// 64-bit FNV-1a: the integrity checksum of dptrain's first checkpoint format (still read).
uint64_t checksum64(const char* data, size_t size);

// True when `bytes` start like a zip archive: the container of torch.save files.
bool is_zip_archive(const Bytes& bytes);
// Reads every record of a zip archive (torch.save's format) through libzip and checks it against
// the CRC-32 the archive stores for it: libtorch's own reader skips those checks, so a flipped byte
// would otherwise load as a wrong number. A truncated archive fails to open. DataError naming
// `origin` (a file, "rank 0") and the record.
void verify_zip_archive(const Bytes& bytes, const std::string& origin);

}  // namespace dpt
