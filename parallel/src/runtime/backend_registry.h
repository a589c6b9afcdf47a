// The communicator backends a build has, each registered by its own folder (private): the runtime
// chooses among them by name or by preference and never names one itself.
//
//   // store/store_backend.cpp
//   DPT_REGISTER_BACKEND(store, Backend{"store", ...});
//
// A backend whose library the build lacks (NCCL without CUDA, MPI off) is not compiled, so it is
// not registered; asking for it by name says so.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/runtime/launch_info.h"

namespace dpt::detail {

// What a backend is chosen by and created from (at creation, rank and size are MPI's where MPI is up).
struct BackendContext {
  LaunchInfo launch;
  torch::Device device{torch::kCPU};
  std::chrono::milliseconds timeout{0};
  // MPI comes up for this launch (mpirun, srun, or alone: runtime/mpi_scope.h); known before it does.
  bool mpi_launch = false;
};

struct Backend {
  std::string name;
  // Empty when the backend can serve this process, else why not (one line, naming what to use).
  std::function<std::string(const BackendContext&)> unusable;
  // When the user chose none: the usable backend with the lowest preference wins; negative:
  // never chosen automatically here.
  std::function<int(const BackendContext&)> preference;
  std::function<CommunicatorPtr(const BackendContext&)> create;
};

// Called at static initialisation by DPT_REGISTER_BACKEND.
bool register_backend(Backend backend);
// nullptr when this build has no such backend.
const Backend* find_backend(const std::string& name);
// The registered names, sorted ("mpi, nccl, store").
std::string backend_names();
// The backend for `requested` ("" or "auto": by preference); throws InvalidArgumentError for an
// unknown name and UnsupportedError for one that cannot serve this process.
const Backend& choose_backend(const std::string& requested, const BackendContext& context);

}  // namespace dpt::detail

#define DPT_REGISTER_BACKEND(tag, ...) \
  static const bool dpt_backend_registered_##tag = ::dpt::detail::register_backend(__VA_ARGS__)
