// The one object a dptrain program creates to join a job: launcher, device, MPI, world communicator.
//
//   int main(int argc, char** argv) {
//     return dpt::run_main("train", [&] {
//       dpt::Runtime runtime;                     // mpirun, srun, torchrun-style env, or alone
//       auto world = runtime.world();             // rank(), size(), allreduce(...), ...
//       auto model = make_model().to(runtime.device());   // cuda:<local rank> or cpu
//       ...
//       return 0;
//     });                                         // ~Runtime: communicators die, then MPI_Finalize
//   }
//
// What the constructor does, in this order:
//  1. detect_launch() (see launch_info.h); logging is initialised with the rank (dpt::log::init).
//  2. When a CUDA device exists (and RuntimeOptions::device / DPTRAIN_DEVICE is not "cpu"), the
//     rank's device (local_rank % device count) becomes the current CUDA device before anything
//     else touches CUDA, so no rank creates a context on GPU 0 by mistake.
//  3. Picks the backend among those the build registered (parallel/src/runtime/backend_registry.h):
//     RuntimeOptions::backend, else DPTRAIN_BACKEND, else "nccl" when a CUDA device is available,
//     "store" for a torchrun-style launch, else "mpi". A backend this build or this launch cannot
//     provide is an UnsupportedError naming the alternatives.
//  4. MPI_Init_thread(MPI_THREAD_MULTIPLE) when launched by mpirun/srun or running alone (an MPI
//     singleton), unless MPI was already initialised by the program (then it is not finalised here).
//  5. Creates the world communicator and installs dpt::set_fatal_hook: when dpt::run_main catches
//     an error in a multi-rank job, the hook takes the whole job down (MPI_Abort under MPI, an
//     immediate exit otherwise, so peers see the connection drop) instead of leaving the other
//     ranks waiting in a collective until their timeout.
//  6. Logs, on rank 0, the settings in force (RuntimeSettings::summary()): what the options and the
//     DPTRAIN_* variables resolved to.
//
// One Runtime per process at a time (a second is an InternalError). Never a static: MPI and NCCL
// must be torn down while the program still runs, not in static destructors.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/runtime/launch_info.h"

namespace dpt {

struct RuntimeOptions {
  // "mpi", "nccl", "store"; empty: DPTRAIN_BACKEND, else automatic (see above).
  std::string backend;
  // Limit for every collective (the watchdog). Zero: DPTRAIN_TIMEOUT in seconds when set, else
  // 300 s. A collective that runs longer throws TimeoutError and, through run_main's fatal hook,
  // ends the job with exit code 3 (dpt::kExitPeerFailure).
  std::chrono::milliseconds timeout{0};
  // Log level (trace .. off); empty: DPTRAIN_LOG_LEVEL, else info.
  std::string log_level;
  // "cpu" or "cuda"; empty: DPTRAIN_DEVICE, else the rank's GPU when one exists. The world
  // communicator works on this device (see Communicator::device()), whatever the backend.
  std::string device;
};

// Everything a Runtime runs with, resolved once from RuntimeOptions, the DPTRAIN_* environment and
// the defaults (docs/communicators.md lists the variables).
struct RuntimeSettings {
  std::string launcher;          // "mpi", "slurm", "torchrun", "none"
  std::string backend;           // the chosen one
  torch::Device device{torch::kCPU};
  std::chrono::milliseconds timeout{0};
  bool checks_calls = false;     // the cross-rank call check (DPTRAIN_DEBUG=DETAIL, DPTRAIN_CHECK_COLLECTIVES)
  size_t flight_recorder = 0;    // collectives kept per communicator (DPTRAIN_FLIGHT_RECORDER; 0: off)
  std::string mpi_thread_level;  // "multiple" or "serialized" (DPTRAIN_MPI_THREAD_LEVEL); MPI launches only
  // "backend mpi, device cpu, 4 ranks (mpi launch), timeout 300 s, call checks off, flight recorder 64"
  std::string summary(int world_size) const;
};

namespace detail {
class MpiScope;
}

class Runtime {
 public:
  explicit Runtime(const RuntimeOptions& options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // The communicator over every rank of the job.
  CommunicatorPtr world() const { return world_; }
  const LaunchInfo& launch() const { return launch_; }
  // cuda:<local rank % device count> when a CUDA device exists (unless asked for cpu), else cpu.
  torch::Device device() const { return device_; }
  const std::string& backend() const { return settings_.backend; }
  std::chrono::milliseconds timeout() const { return settings_.timeout; }
  const RuntimeSettings& settings() const { return settings_; }

  // The timeout a Runtime with these options uses (resolves zero as documented above).
  static std::chrono::milliseconds resolve_timeout(std::chrono::milliseconds requested);

 private:
  void start(const RuntimeOptions& options);
  // The rank's device (step 2 above); sets it as the current CUDA device.
  torch::Device choose_device(const RuntimeOptions& options) const;

  LaunchInfo launch_;
  torch::Device device_{torch::kCPU};
  RuntimeSettings settings_;
  std::unique_ptr<detail::MpiScope> mpi_;  // set when this launch brings MPI up
  CommunicatorPtr world_;
};

}  // namespace dpt
