// Where a number was measured: every result file carries this block, so a figure in the README
// can always be traced to a machine, a library version and a thread setting.
#pragma once

#include <nlohmann/json.hpp>

namespace dpt::bench {

// hostname, CPU model, logical cores (and those this process may run on), memory, the libtorch,
// MPI and dptrain versions, what this build has (MPI/CUDA/NCCL), the GPU model when there is
// one, and the UTC time. Cheap; needs no communicator (MPI's version is asked without MPI_Init).
nlohmann::json machine_info();

}  // namespace dpt::bench
