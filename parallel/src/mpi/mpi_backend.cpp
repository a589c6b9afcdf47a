// The MPI backend's registration (runtime/backend_registry.h): jobs started by mpirun or srun (or
// a process alone, an MPI singleton); preferred there unless NCCL serves a CUDA device.
#include "dptrain/core/error.h"
#include "dptrain/parallel/mpi/mpi_communicator.h"
#include "runtime/backend_registry.h"

namespace dpt::detail {

DPT_REGISTER_BACKEND(mpi, Backend{
    "mpi",
    [](const BackendContext& context) {
      if (context.mpi_launch) return std::string();
      return concat("backend mpi needs an MPI launch (mpirun/srun); this process was launched ",
                    context.launch.launcher, "-style. Use DPTRAIN_BACKEND=store (CPU) or nccl (CUDA)");
    },
    [](const BackendContext&) { return 1; },
    [](const BackendContext& context) -> CommunicatorPtr {
      return MpiCommunicator::create_world(context.launch.local_rank, context.timeout, context.device);
    }});

}  // namespace dpt::detail
