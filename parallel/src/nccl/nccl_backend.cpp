// The NCCL backend's registration (runtime/backend_registry.h): a rank with a CUDA device, any
// launcher; preferred whenever it can serve.
#include "dptrain/parallel/nccl/nccl_communicator.h"
#include "runtime/backend_registry.h"

namespace dpt::detail {

DPT_REGISTER_BACKEND(nccl, Backend{
    "nccl",
    [](const BackendContext& context) {
      if (context.device.is_cuda()) return std::string();
      return std::string("backend nccl needs a CUDA device, and this process sees none; use DPTRAIN_BACKEND=mpi or store");
    },
    [](const BackendContext&) { return 0; },
    [](const BackendContext& context) -> CommunicatorPtr {
      return NcclCommunicator::create_world(context.launch, context.device, context.timeout);
    }});

}  // namespace dpt::detail
