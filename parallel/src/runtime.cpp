#include "dptrain/parallel/runtime.h"

#include "flight_recorder.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "dptrain/core/config.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"
#include "dptrain/parallel/store_communicator.h"

#if DPTRAIN_HAVE_MPI
#include <mpi.h>

#include "dptrain/parallel/mpi_communicator.h"
#endif
#if DPTRAIN_HAVE_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif
#if DPTRAIN_HAVE_NCCL
#include "dptrain/parallel/nccl_communicator.h"
#endif

namespace dpt {
namespace {

std::atomic<bool> g_runtime_alive{false};  // one Runtime per process (MPI allows one init)

constexpr std::chrono::seconds kDefaultTimeout{300};

bool mpi_is_up() {
#if DPTRAIN_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
#else
  return false;
#endif
}

// Installed for multi-rank jobs; see runtime.h, step 5. Captures nothing: it may run after the
// Runtime is gone (run_main catches the error after the stack, and the Runtime, unwound).
void take_the_job_down(int exit_code) {
  dpt::log::flush();
  std::fflush(stdout);
  std::fflush(stderr);
#if DPTRAIN_HAVE_MPI
  if (mpi_is_up()) MPI_Abort(MPI_COMM_WORLD, exit_code);
#endif
  std::_Exit(exit_code);
}

std::string resolve_backend(const RuntimeOptions& options, const LaunchInfo& launch, const torch::Device& device) {
  std::string name = options.backend.empty() ? env::get_or("DPTRAIN_BACKEND", "") : options.backend;
  if (name.empty() || name == "auto") {
    if (device.is_cuda() && DPTRAIN_HAVE_NCCL) return "nccl";
    if (launch.launcher == "torchrun" || !DPTRAIN_HAVE_MPI) return "store";
    return "mpi";
  }
  DPT_CHECK(name != "gloo", UnsupportedError, "backend gloo is not available: libtorch's wheel ships ",
            "ProcessGroupGloo.hpp without the gloo headers it includes; use store (CPU, any launcher), mpi or nccl");
  DPT_CHECK(name == "mpi" || name == "nccl" || name == "store", InvalidArgumentError, "backend '", name,
            "' (RuntimeOptions::backend / DPTRAIN_BACKEND) is unknown; use mpi, nccl or store");
  return name;
}

}  // namespace

std::chrono::milliseconds Runtime::resolve_timeout(std::chrono::milliseconds requested) {
  DPT_CHECK(requested.count() >= 0, InvalidArgumentError, "collective timeout must be >= 0 ms, got ",
            requested.count());
  if (requested.count() > 0) return requested;
  auto seconds = env::get_int("DPTRAIN_TIMEOUT");
  if (!seconds) return kDefaultTimeout;
  DPT_CHECK(*seconds > 0, InvalidArgumentError, "DPTRAIN_TIMEOUT=", *seconds, " must be > 0 (seconds)");
  return std::chrono::seconds(*seconds);
}

Runtime::Runtime(const RuntimeOptions& options) {
  bool expected = false;
  DPT_CHECK(g_runtime_alive.compare_exchange_strong(expected, true), InternalError,
            "a dpt::Runtime already exists in this process; create one and pass world() around");
  try {
    launch_ = detect_launch();
    dpt::log::init(launch_.rank, launch_.world_size, options.log_level);
    timeout_ = resolve_timeout(options.timeout);

    const std::string wanted = options.device.empty() ? env::get_or("DPTRAIN_DEVICE", "") : options.device;
    DPT_CHECK(wanted.empty() || wanted == "cpu" || wanted == "cuda", InvalidArgumentError, "device '", wanted,
              "' (RuntimeOptions::device / DPTRAIN_DEVICE) is unknown; use cpu or cuda");
#if DPTRAIN_HAVE_CUDA
    // Before anything else touches CUDA: this rank's GPU becomes the current device.
    if (wanted != "cpu" && torch::cuda::is_available()) {
      const int count = static_cast<int>(torch::cuda::device_count());
      const int index = launch_.local_rank % count;
      if (launch_.local_world_size > count) {
        DPT_LOG_WARN("{} ranks on this node share {} CUDA devices", launch_.local_world_size, count);
      }
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
      device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
    }
#endif
    DPT_CHECK(wanted != "cuda" || device_.is_cuda(), UnsupportedError,
              "device cuda was asked for (RuntimeOptions::device / DPTRAIN_DEVICE) but this process sees no CUDA device",
              DPTRAIN_HAVE_CUDA ? "" : " (this build of dptrain has no CUDA)");
    backend_ = resolve_backend(options, launch_, device_);
    DPT_CHECK(backend_ != "nccl" || device_.is_cuda(), UnsupportedError,
              "backend nccl needs a CUDA device, and this process sees none; use DPTRAIN_BACKEND=mpi or store");
    DPT_CHECK(backend_ != "nccl" || DPTRAIN_HAVE_NCCL, UnsupportedError,
              "backend nccl is not in this build (DPTRAIN_WITH_NCCL); use mpi or store");

#if DPTRAIN_HAVE_MPI
    // MPI comes up whenever an MPI launcher (or nothing) started us; a torchrun-style launch has no
    // MPI runtime behind it, so an MPI singleton there would be a world of one.
    const bool mpi_launch = launch_.launcher == "mpi" || launch_.launcher == "slurm" || launch_.launcher == "none";
    if (mpi_launch) {
      int initialized = 0;
      MPI_Initialized(&initialized);
      if (!initialized) {
        // DPTRAIN_MPI_THREAD_LEVEL=serialized asks for less than MULTIPLE: what some MPI builds grant,
        // so that path can be tested where MULTIPLE is available.
        const std::string level = env::get_or("DPTRAIN_MPI_THREAD_LEVEL", "multiple");
        DPT_CHECK(level == "multiple" || level == "serialized", InvalidArgumentError, "DPTRAIN_MPI_THREAD_LEVEL='",
                  level, "' is not multiple or serialized");
        int provided = MPI_THREAD_SINGLE;
        int rc = MPI_Init_thread(nullptr, nullptr, level == "multiple" ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED,
                                 &provided);
        DPT_CHECK(rc == MPI_SUCCESS, CommunicationError, "MPI_Init_thread failed with code ", rc);
        owns_mpi_ = true;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
      }
      int provided = MPI_THREAD_SINGLE;
      MPI_Query_thread(&provided);
      DPT_CHECK(provided >= MPI_THREAD_SERIALIZED, UnsupportedError,
                "MPI provides thread level ", provided,
                " but dptrain needs at least MPI_THREAD_SERIALIZED (its progress thread calls MPI)");
      if (provided < MPI_THREAD_MULTIPLE) {
        DPT_LOG_INFO("MPI grants MPI_THREAD_SERIALIZED only: the communicators' threads take turns inside MPI");
      }
      int rank = 0, size = 1;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      if (rank != launch_.rank || size != launch_.world_size) {
        // srun without the launcher's variables, or a launcher we do not know: MPI is the truth.
        launch_.rank = rank;
        launch_.world_size = size;
        dpt::log::init(rank, size, options.log_level);
      }
    } else {
      DPT_CHECK(backend_ != "mpi", UnsupportedError, "backend mpi needs an MPI launch (mpirun/srun); this process ",
                "was launched ", launch_.launcher, "-style. Use DPTRAIN_BACKEND=store (CPU) or nccl (CUDA)");
    }
#endif

    if (backend_ == "mpi") {
#if DPTRAIN_HAVE_MPI
      world_ = MpiCommunicator::create_world(launch_.local_rank, timeout_, device_);
#else
      DPT_THROW(UnsupportedError, "backend mpi is not in this build (DPTRAIN_WITH_MPI=OFF); use store or nccl");
#endif
    } else if (backend_ == "nccl") {
#if DPTRAIN_HAVE_NCCL
      world_ = NcclCommunicator::create_world(launch_, device_, timeout_);
#endif
    } else {
      world_ = StoreCommunicator::create_world(launch_, timeout_);
    }

    if (launch_.world_size > 1) {
      set_fatal_hook(&take_the_job_down);
      detail::FlightRecorder::install_crash_dump();  // a crashing rank leaves its last collectives
    }
    DPT_LOG_DEBUG("runtime up: launcher {}, rank {}/{}, local rank {}, device {}, backend {}, timeout {} ms",
                  launch_.launcher, launch_.rank, launch_.world_size, launch_.local_rank, device_.str(), backend_,
                  timeout_.count());
  } catch (...) {
    world_.reset();
#if DPTRAIN_HAVE_MPI
    // A failed start in a multi-rank job: leave MPI up so the fatal hook can abort the job;
    // alone, finalise cleanly.
    if (owns_mpi_ && launch_.world_size <= 1 && mpi_is_up()) MPI_Finalize();
#endif
    if (launch_.world_size > 1) set_fatal_hook(&take_the_job_down);
    g_runtime_alive = false;
    throw;
  }
}

Runtime::~Runtime() {
  const bool broken = world_ && world_->is_broken();
  if (world_ && launch_.world_size > 1 && std::uncaught_exceptions() > 0 && !broken) {
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
#if DPTRAIN_HAVE_MPI
  if (owns_mpi_ && mpi_is_up()) {
    if (launch_.world_size > 1 && (broken || std::uncaught_exceptions() > 0)) {
      // Finalising would wait for peers that are stuck or gone. An exception on its way to
      // run_main: leave MPI up, the fatal hook aborts the job after the error line is printed.
      // A timed-out collective the program chose to survive: abort now.
      if (broken && std::uncaught_exceptions() == 0) {
        DPT_LOG_ERROR("a collective timed out earlier; aborting the MPI job");
        dpt::log::flush();
        MPI_Abort(MPI_COMM_WORLD, kExitPeerFailure);
      }
    } else {
      MPI_Finalize();
    }
  }
#endif
  g_runtime_alive = false;
}

}  // namespace dpt
