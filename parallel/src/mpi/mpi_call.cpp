#include "mpi_call.h"

#include <thread>

#include "dptrain/core/error.h"
#include "mpi_check.h"

namespace dpt::detail {

bool mpi_serialized() {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  return provided < MPI_THREAD_MULTIPLE;
}

std::mutex& mpi_serial_lock() {
  static std::mutex* lock = new std::mutex();  // never destroyed: threads may outlive statics
  return *lock;
}

int mpi_locked(const std::function<int()>& call) {
  if (!mpi_serialized()) return call();
  std::lock_guard<std::mutex> lock(mpi_serial_lock());
  return call();
}

void mpi_collective(const std::function<int()>& blocking, const std::function<int(MPI_Request*)>& start,
                    const std::string& what) {
  auto fail = [&](int rc) {
    DPT_THROW(CommunicationError, what, ": MPI failed: ", mpi_error_string(rc));
  };
  if (!mpi_serialized()) {
    if (int rc = blocking(); rc != MPI_SUCCESS) fail(rc);
    return;
  }
  MPI_Request request = MPI_REQUEST_NULL;
  {
    std::lock_guard<std::mutex> lock(mpi_serial_lock());
    if (int rc = start(&request); rc != MPI_SUCCESS) fail(rc);
  }
  for (;;) {
    int done = 0;
    {
      std::lock_guard<std::mutex> lock(mpi_serial_lock());
      if (int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE); rc != MPI_SUCCESS) fail(rc);
    }
    if (done) return;
    std::this_thread::yield();
  }
}

}  // namespace dpt::detail
