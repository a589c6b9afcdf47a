#include "dptrain/core/operators.h"

#include <c10/core/CPUAllocator.h>
#include <dlfcn.h>

#include <mutex>
#include <set>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

std::string dl_error() {
  const char* text = dlerror();
  return text ? text : "unknown dlopen error";
}

// The directory libtorch's libraries were loaded from (where libtorch_python.so lives too).
std::string torch_library_directory() {
  Dl_info info;
  auto* in_libc10 = static_cast<c10::Allocator* (*)()>(&c10::GetCPUAllocator);
  if (dladdr(reinterpret_cast<void*>(in_libc10), &info) == 0 || !info.dli_fname) return "";
  std::string path = info.dli_fname;
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

void load_operator_library(const std::string& path) {
  static std::mutex mutex;
  static std::set<std::string> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded.count(path)) return;
  DPT_CHECK(!fs::is_directory(path), InvalidArgumentError, "--load-ops ", path,
            " is a directory: name the shared library itself (e.g. DIR/libmy_ops.so)");
  DPT_CHECK(fs::is_regular_file(path), InvalidArgumentError, "--load-ops ", path,
            fs::exists(path) ? ": not a regular file" : ": no such file");
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    std::string error = dl_error();
    if (error.find("libtorch_python") == std::string::npos) {
      DPT_THROW(ModelError, "--load-ops ", path, ": cannot load it: ", error);
    }
    // A Python extension module (torchvision's _C.so): its torch Python bindings sit next to
    // libtorch, outside the search path of a library loaded by hand.
    const std::string bindings = torch_library_directory() + "/libtorch_python.so";
    if (dlopen(bindings.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      DPT_THROW(ModelError, "--load-ops ", path, ": a Python extension module; it needs torch's Python bindings (",
                bindings, "), which need Python's C API: load Python's shared library first, e.g. --load-ops "
                "$(python -c 'import sysconfig; print(sysconfig.get_config_var(\"LIBDIR\") + \"/\" + "
                "sysconfig.get_config_var(\"INSTSONAME\"))') (nothing of Python runs). dlopen said: ", dl_error());
    }
    DPT_CHECK(dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr, ModelError, "--load-ops ", path,
              ": cannot load it: ", dl_error());
  }
  loaded.insert(path);
  DPT_LOG_DEBUG("operator library {} loaded", path);
}

std::vector<std::string> operator_libraries_from_env() {
  std::vector<std::string> paths;
  const std::string value = env::get_or("DPTRAIN_LOAD_OPS", "");
  size_t start = 0;
  while (start <= value.size()) {
    const size_t end = value.find(':', start);
    const std::string part = value.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!part.empty()) paths.push_back(part);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return paths;
}

}  // namespace dpt
