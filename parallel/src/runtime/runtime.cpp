// dpt::Runtime: the launch, the device, MPI's scope and the world communicator, in the order
// runtime.h describes. The runtime chooses; backends (runtime/backend_registry.h) and MPI
// (runtime/mpi_scope.h) know their own details.
#include "dptrain/parallel/runtime/runtime.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "comm/fingerprint.h"
#include "dptrain/core/config.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"
#include "liveness/flight_recorder.h"
#include "runtime/backend_registry.h"
#include "runtime/mpi_scope.h"

namespace dpt {
namespace {

std::atomic<bool> g_runtime_alive{false};  // one Runtime per process (MPI allows one init)

constexpr std::chrono::seconds kDefaultTimeout{300};

// Installed for multi-rank jobs; see runtime.h, step 5. Captures nothing: it may run after the
// Runtime is gone (run_main catches the error after the stack, and the Runtime, unwound).
void take_the_job_down(int exit_code) {
  dpt::log::drain_output(std::chrono::milliseconds(1000));  // Note [Output before an abort]
  detail::MpiScope::abort_job(exit_code);
  std::_Exit(exit_code);
}

// MPI comes up whenever an MPI launcher (or nothing) started us; a torchrun-style launch has no
// MPI runtime behind it, so an MPI singleton there would be a world of one.
bool is_mpi_launch(const LaunchInfo& launch) {
  return detail::MpiScope::available() &&
         (launch.launcher == "mpi" || launch.launcher == "slurm" || launch.launcher == "none");
}

}  // namespace

std::string RuntimeSettings::summary(int world_size) const {
  return detail::concat("backend ", backend, ", device ", device.str(), ", ", world_size, " rank(s) (", launcher,
                        " launch), timeout ", std::chrono::duration<double>(timeout).count(), " s, call checks ",
                        checks_calls ? "on" : "off", ", flight recorder ", flight_recorder,
                        mpi_thread_level.empty() ? "" : ", MPI thread level " + mpi_thread_level);
}

std::chrono::milliseconds Runtime::resolve_timeout(std::chrono::milliseconds requested) {
  DPT_CHECK(requested.count() >= 0, InvalidArgumentError, "collective timeout must be >= 0 ms, got ",
            requested.count());
  if (requested.count() > 0) return requested;
  auto seconds = env::get_int("DPTRAIN_TIMEOUT");
  if (!seconds) return kDefaultTimeout;
  DPT_CHECK(*seconds > 0, InvalidArgumentError, "DPTRAIN_TIMEOUT=", *seconds, " must be > 0 (seconds)");
  return std::chrono::seconds(*seconds);
}

torch::Device Runtime::choose_device(const RuntimeOptions& options) const {
  const std::string wanted = options.device.empty() ? env::get_or("DPTRAIN_DEVICE", "") : options.device;
  DPT_CHECK(wanted.empty() || wanted == "cpu" || wanted == "cuda", InvalidArgumentError, "device '", wanted,
            "' (RuntimeOptions::device / DPTRAIN_DEVICE) is unknown; use cpu or cuda");
  torch::Device device(torch::kCPU);
  if (wanted != "cpu" && torch::cuda::is_available()) {
    const int count = static_cast<int>(torch::cuda::device_count());
    if (launch_.local_world_size > count) {
      DPT_LOG_WARN("{} ranks on this node share {} CUDA devices", launch_.local_world_size, count);
    }
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(launch_.local_rank % count));
    // Before anything else touches CUDA: no rank creates a context on GPU 0 by mistake.
    c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->setDevice(device);
  }
  DPT_CHECK(wanted != "cuda" || device.is_cuda(), UnsupportedError,
            "device cuda was asked for (RuntimeOptions::device / DPTRAIN_DEVICE) but this process sees no CUDA device",
            DPTRAIN_HAVE_CUDA ? "" : " (this build of dptrain has no CUDA)");
  return device;
}

Runtime::Runtime(const RuntimeOptions& options) {
  bool expected = false;
  DPT_CHECK(g_runtime_alive.compare_exchange_strong(expected, true), InternalError,
            "a dpt::Runtime already exists in this process; create one and pass world() around");
  try {
    start(options);
  } catch (...) {
    world_.reset();
    // A failed start in a multi-rank job: MPI stays up so the fatal hook can abort the job; alone,
    // it is finalised cleanly.
    if (mpi_ && launch_.world_size > 1) mpi_->leave_up();
    mpi_.reset();
    if (launch_.world_size > 1) set_fatal_hook(&take_the_job_down);
    g_runtime_alive = false;
    throw;
  }
}

void Runtime::start(const RuntimeOptions& options) {
  launch_ = detect_launch();
  dpt::log::init(launch_.rank, launch_.world_size, options.log_level);
  settings_.launcher = launch_.launcher;
  settings_.timeout = resolve_timeout(options.timeout);
  device_ = choose_device(options);
  settings_.device = device_;

  detail::BackendContext context{launch_, device_, settings_.timeout, is_mpi_launch(launch_)};
  const std::string requested = options.backend.empty() ? env::get_or("DPTRAIN_BACKEND", "") : options.backend;
  const detail::Backend& backend = detail::choose_backend(requested, context);  // before MPI comes up
  settings_.backend = backend.name;

  if (context.mpi_launch) {
    settings_.mpi_thread_level = env::get_or("DPTRAIN_MPI_THREAD_LEVEL", "multiple");
    mpi_ = std::make_unique<detail::MpiScope>(settings_.mpi_thread_level);
    if (mpi_->rank() != launch_.rank || mpi_->size() != launch_.world_size) {
      // srun without the launcher's variables, or a launcher we do not know: MPI is the truth.
      launch_.rank = mpi_->rank();
      launch_.world_size = mpi_->size();
      context.launch = launch_;
      dpt::log::init(launch_.rank, launch_.world_size, options.log_level);
    }
  }
  settings_.checks_calls = detail::call_check_enabled();
  settings_.flight_recorder = detail::FlightRecorder::capacity_from_env();

  world_ = backend.create(context);
  if (launch_.world_size > 1) {
    set_fatal_hook(&take_the_job_down);
    detail::FlightRecorder::install_crash_dump();  // a crashing rank leaves its last collectives
  }
  if (launch_.rank == 0) DPT_LOG_INFO("dptrain runtime: {}", settings_.summary(launch_.world_size));
}

Runtime::~Runtime() {
  const bool broken = world_ && world_->is_broken();
  const bool unwinding = std::uncaught_exceptions() > 0;
  if (world_ && launch_.world_size > 1 && unwinding && !broken) {
    // An error is about to take the job down (run_main's fatal hook): this rank's last
    // collectives go to the log first. (A timeout has logged them already.)
    try {
      if (const std::string record = world_->flight_record(); !record.empty()) DPT_LOG_ERROR("{}", record);
    } catch (...) {
    }
  }
  if (world_ && world_.use_count() > 1) {
    DPT_LOG_WARN("the world communicator outlives the dpt::Runtime; it must not be used after this point");
  }
  world_.reset();
  if (mpi_ && launch_.world_size > 1 && (broken || unwinding)) {
    // Finalising would wait for peers that are stuck or gone. An exception on its way to
    // run_main: MPI stays up, the fatal hook aborts the job after the error line is printed. A
    // timed-out collective the program chose to survive: abort now.
    if (broken && !unwinding) {
      DPT_LOG_ERROR("a collective timed out earlier; aborting the MPI job");
      dpt::log::drain_output(std::chrono::milliseconds(1000));
      detail::MpiScope::abort_job(kExitPeerFailure);
    }
    mpi_->leave_up();
  }
  mpi_.reset();
  g_runtime_alive = false;
}

}  // namespace dpt
