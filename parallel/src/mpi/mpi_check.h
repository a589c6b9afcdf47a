// MPI_CHECK: every MPI call's return code becomes a CommunicationError with MPI's own words.
// Communicators set MPI_ERRORS_RETURN, so errors come back here instead of aborting the process.
#pragma once

#include <mpi.h>

#include <string>

#include "dptrain/core/error.h"

namespace dpt::detail {

inline std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<size_t>(length));
}

}  // namespace dpt::detail

// MPI_CHECK(MPI_Barrier(comm), who, ": barrier");  ->  "mpi rank 1/4: barrier: MPI_Barrier(comm)
// failed: MPI_ERR_COMM: invalid communicator"
#define MPI_CHECK(call, ...)                                                                   \
  do {                                                                                         \
    int mpi_check_rc_ = (call);                                                                \
    if (mpi_check_rc_ != MPI_SUCCESS) {                                                        \
      DPT_THROW(CommunicationError, __VA_ARGS__, ": ", #call, " failed: ",                     \
                ::dpt::detail::mpi_error_string(mpi_check_rc_));                               \
    }                                                                                          \
  } while (false)
