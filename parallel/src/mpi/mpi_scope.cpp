#include "runtime/mpi_scope.h"

#include <mpi.h>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt::detail {

bool MpiScope::available() { return true; }

bool MpiScope::is_up() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

void MpiScope::abort_job(int exit_code) {
  if (is_up()) MPI_Abort(MPI_COMM_WORLD, exit_code);
}

void MpiScope::broadcast_world(void* data, size_t bytes, const std::string& who) {
  const int rc = MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, 0, MPI_COMM_WORLD);
  DPT_CHECK(rc == MPI_SUCCESS, CommunicationError, who, ": broadcasting from rank 0 over MPI failed");
}

MpiScope::MpiScope(const std::string& thread_level) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // "serialized" asks for less than MULTIPLE: what some MPI builds grant, so that path can be
    // tested where MULTIPLE is available.
    DPT_CHECK(thread_level == "multiple" || thread_level == "serialized", InvalidArgumentError,
              "DPTRAIN_MPI_THREAD_LEVEL='", thread_level, "' is not multiple or serialized");
    int provided = MPI_THREAD_SINGLE;
    const int rc = MPI_Init_thread(nullptr, nullptr,
                                   thread_level == "multiple" ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED, &provided);
    DPT_CHECK(rc == MPI_SUCCESS, CommunicationError, "MPI_Init_thread failed with code ", rc);
    owns_ = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  try {
    int provided = MPI_THREAD_SINGLE;
    MPI_Query_thread(&provided);
    DPT_CHECK(provided >= MPI_THREAD_SERIALIZED, UnsupportedError, "MPI provides thread level ", provided,
              " but dptrain needs at least MPI_THREAD_SERIALIZED (its progress thread calls MPI)");
    if (provided < MPI_THREAD_MULTIPLE) {
      DPT_LOG_INFO("MPI grants MPI_THREAD_SERIALIZED only: the communicators' threads take turns inside MPI");
    }
  } catch (...) {
    // Alone, MPI goes cleanly; in a multi-rank job it stays up for the fatal hook to abort the job.
    if (owns_ && size_ <= 1) MPI_Finalize();
    throw;
  }
}

MpiScope::~MpiScope() {
  if (owns_ && !leave_up_ && is_up()) MPI_Finalize();
}

}  // namespace dpt::detail
