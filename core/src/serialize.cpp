#include "dptrain/core/serialize.h"

#include <caffe2/serialize/inline_container.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/stale_files.h"

namespace dpt {
namespace {

std::string first_line(const std::string& text) {
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

void fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;  // best effort for directories on file systems that refuse O_RDONLY dirs
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

Bytes serialize_ivalue(const c10::IValue& value) { return torch::pickle_save(value); }

Bytes save_for_pytorch(const c10::IValue& value) {
  // torch::pickle_save's steps, with the pickler's aggregate tags off.
  std::vector<char> pickled;
  torch::jit::Pickler pickler([&pickled](const char* data, size_t size) { pickled.insert(pickled.end(), data, data + size); },
                              /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
                              /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();
  Bytes archive;
  archive.reserve(pickled.size());
  caffe2::serialize::PyTorchStreamWriter writer([&archive](const void* data, size_t size) {
    const char* bytes = static_cast<const char*>(data);
    archive.insert(archive.end(), bytes, bytes + size);
    return size;
  });
  torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  return archive;
}

c10::IValue deserialize_ivalue(const Bytes& bytes, const std::string& what) {
  try {
    return torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    DPT_THROW(DataError, "cannot decode ", what, " (", bytes.size(), " bytes): ", first_line(e.what_without_backtrace()));
  }
}

Bytes serialize_tensor(const torch::Tensor& tensor) { return serialize_ivalue(tensor); }

torch::Tensor deserialize_tensor(const Bytes& bytes) {
  auto value = deserialize_ivalue(bytes, "tensor");
  DPT_CHECK(value.isTensor(), DataError, "expected a serialized tensor, got ", value.tagKind());
  return value.toTensor();
}

Bytes serialize_named_tensors(const NamedTensors& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : tensors) dict.insert(name, tensor);
  return serialize_ivalue(dict);
}

NamedTensors deserialize_named_tensors(const Bytes& bytes, const std::string& what) {
  return named_tensors_from(deserialize_ivalue(bytes, what), what);
}

NamedTensors named_tensors_from(const c10::IValue& value, const std::string& what) {
  DPT_CHECK(value.isGenericDict(), DataError, what, " is not a state_dict (a dict of tensors): it is a ",
            value.tagKind());
  NamedTensors tensors;
  for (const auto& entry : value.toGenericDict()) {
    DPT_CHECK(entry.key().isString() && entry.value().isTensor(), DataError, what,
              " is not a state_dict (a dict of tensors): it maps a ", entry.key().tagKind(), " to a ",
              entry.value().tagKind());
    tensors.emplace(entry.key().toStringRef(), entry.value().toTensor());
  }
  return tensors;
}

Bytes serialize_module(const torch::jit::Module& module) {
  std::ostringstream out;
  module.save(out);
  const std::string data = out.str();
  return Bytes(data.begin(), data.end());
}

torch::jit::Module deserialize_module(const Bytes& bytes, const std::string& origin,
                                      const c10::optional<c10::Device>& device) {
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  try {
    return torch::jit::load(in, device);
  } catch (const std::exception& e) {
    // c10::Error, or torch::jit::ErrorReport from compiling the model's code.
    auto* c10_error = dynamic_cast<const c10::Error*>(&e);
    const std::string what = c10_error ? c10_error->what_without_backtrace() : e.what();
    // "Unknown builtin op: torchvision::deform_conv2d.": an operator library was not loaded.
    const auto unknown = what.find("Unknown builtin op: ");
    if (unknown != std::string::npos) {
      std::string op = first_line(what.substr(unknown + 20));
      while (!op.empty() && (op.back() == '.' || op.back() == ' ')) op.pop_back();
      DPT_THROW(ModelError, origin, " calls the operator ", op, ", which no loaded library registers: load the "
                "library that defines it with --load-ops LIB (or DPTRAIN_LOAD_OPS, or dpt::load_operator_library "
                "in C++) - for torchvision's operators its _C.so, see docs/cli.md");
    }
    auto start = what.find_first_not_of("\n ");
    DPT_THROW(ModelError, origin, " is not a TorchScript model: ",
              first_line(start == std::string::npos ? what : what.substr(start)));
  }
}

Bytes read_file_bounded(const std::string& path, uint64_t max_bytes, const std::string& what) {
  const std::string named = what.empty() ? path : what + " " + path;
  // O_NONBLOCK: opening a FIFO nobody writes to must not hang; only regular files are read.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int saved = errno;
    DPT_CHECK(saved != ENOENT, IoError, named, ": no such file");
    DPT_THROW(IoError, named, ": cannot open for reading (", std::strerror(saved), ")");
  }
  struct stat info;
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const bool directory = S_ISDIR(info.st_mode);
    ::close(fd);
    DPT_THROW(IoError, named, directory ? ": is a directory, expected a file"
                                        : ": not a regular file (a FIFO, socket or device); only regular files are read");
  }
  const uint64_t size = static_cast<uint64_t>(info.st_size);
  if (max_bytes > 0 && size > max_bytes) {
    ::close(fd);
    DPT_THROW(IoError, named, ": ", size, " bytes, more than the ", max_bytes, " this file may hold");
  }
  Bytes bytes(size);
  size_t done = 0;
  while (done < size) {  // exactly the size stat reported: a file growing meanwhile is not chased
    ssize_t n = ::read(fd, bytes.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int saved = errno;
      ::close(fd);
      DPT_CHECK(n == 0, IoError, named, ": read failed (", std::strerror(saved), ")");
      DPT_THROW(IoError, named, ": truncated while being read (", done, " of ", size, " bytes)");
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return bytes;
}

Bytes read_file(const std::string& path) { return read_file_bounded(path, 0, ""); }

int remove_stale_temporaries(const std::string& directory, const std::string& prefix) {
  std::vector<std::string> names;
  try {
    names = fs::list_directory(directory.empty() ? "." : directory);
  } catch (const Error&) {
    return 0;  // an unreadable directory: the write that follows says what is wrong
  }
  int removed = 0;
  for (const auto& name : names) {
    const auto marker = name.rfind(".tmp.");
    if (marker == std::string::npos || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(marker + 5);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    const std::string stale = fs::join(directory, name);
    if (fs::is_regular_file(stale) && fs::remove_file(stale)) {
      DPT_LOG_WARN("removed {}: a partial write of {} left by a killed run (process {})", stale,
                   fs::join(directory, name.substr(0, marker)), pid);
      ++removed;
    }
  }
  return removed;
}

void write_file_atomic(const std::string& path, const Bytes& bytes) {
  remove_stale_temporaries(fs::parent_path(path), fs::file_name(path) + ".tmp.");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DPT_CHECK(fd >= 0, IoError, path, ": cannot write (", std::strerror(errno), ")");
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      DPT_THROW(IoError, path, ": write failed (", std::strerror(saved), ")");
    }
    written += static_cast<size_t>(n);
  }
  bool synced = ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!synced) {
    ::unlink(tmp.c_str());
    DPT_THROW(IoError, path, ": fsync failed (", std::strerror(saved), ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    saved = errno;
    ::unlink(tmp.c_str());
    DPT_THROW(IoError, path, ": rename failed (", std::strerror(saved), ")");
  }
  auto dir = fs::parent_path(path);
  fsync_path(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

uint64_t checksum64(const char* data, size_t size) {
  uint64_t hash = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace dpt
