// The store backend's registration (runtime/backend_registry.h): any launch, CPU tensors; chosen
// automatically when neither NCCL (a CUDA device) nor MPI (an MPI launch) serves.
#include "dptrain/parallel/store/store_communicator.h"
#include "runtime/backend_registry.h"

namespace dpt::detail {

DPT_REGISTER_BACKEND(store, Backend{
    "store",
    [](const BackendContext&) { return std::string(); },
    [](const BackendContext&) { return 2; },
    [](const BackendContext& context) -> CommunicatorPtr {
      return StoreCommunicator::create_world(context.launch, context.timeout);
    }});

}  // namespace dpt::detail
