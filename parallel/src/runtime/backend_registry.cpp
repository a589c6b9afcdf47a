#include "runtime/backend_registry.h"

#include <algorithm>
#include <map>

#include "dptrain/core/error.h"

namespace dpt::detail {
namespace {

std::map<std::string, Backend>& registry() {
  static std::map<std::string, Backend> backends;  // constructed on first use: any static order works
  return backends;
}

// Backends dptrain knows of but this build may lack, and the build option that brings each.
std::string missing_backend_hint(const std::string& name) {
  if (name == "nccl") return " (built with CUDA and DPTRAIN_WITH_NCCL)";
  if (name == "mpi") return " (built with DPTRAIN_WITH_MPI)";
  return "";
}

}  // namespace

bool register_backend(Backend backend) {
  std::string name = backend.name;
  return registry().emplace(std::move(name), std::move(backend)).second;
}

const Backend* find_backend(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

std::string backend_names() {
  std::string names;
  for (const auto& [name, backend] : registry()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

const Backend& choose_backend(const std::string& requested, const BackendContext& context) {
  if (requested.empty() || requested == "auto") {
    const Backend* best = nullptr;
    int best_preference = 0;
    for (const auto& [name, backend] : registry()) {
      const int preference = backend.preference(context);
      if (preference < 0 || !backend.unusable(context).empty()) continue;
      if (best == nullptr || preference < best_preference) {
        best = &backend;
        best_preference = preference;
      }
    }
    DPT_CHECK(best != nullptr, UnsupportedError, "no communicator backend of this build (", backend_names(),
              ") can serve this process");
    return *best;
  }
  DPT_CHECK(requested != "gloo", UnsupportedError, "backend gloo is not available: libtorch's wheel ships ",
            "ProcessGroupGloo.hpp without the gloo headers it includes; use store (CPU, any launcher), mpi or nccl");
  const Backend* backend = find_backend(requested);
  if (backend == nullptr && (requested == "nccl" || requested == "mpi")) {
    DPT_THROW(UnsupportedError, "backend ", requested, " is not in this build", missing_backend_hint(requested),
              "; use ", backend_names());
  }
  DPT_CHECK(backend != nullptr, InvalidArgumentError, "backend '", requested,
            "' (RuntimeOptions::backend / DPTRAIN_BACKEND) is unknown; use ", backend_names());
  const std::string why = backend->unusable(context);
  DPT_CHECK(why.empty(), UnsupportedError, why);
  return *backend;
}

}  // namespace dpt::detail
