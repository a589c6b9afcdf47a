// Waiting for the launcher to read what this process wrote, before the job is torn down.
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "dptrain/core/logging.h"

namespace dpt::log {
namespace {

// Bytes written into `fd` that its reader has not taken yet; 0 where that cannot be known (a file,
// a terminal: their writes are done when write() returns).
int unread_bytes(int fd) {
  int pending = 0;
  if (::ioctl(fd, FIONREAD, &pending) != 0) return 0;
  return pending;
}

}  // namespace

// Note [Output before an abort]
// Under mpirun a rank's stdout and stderr are pipes read by the launcher. MPI_Abort makes it kill
// every rank and exit, and what still sits in an aborting rank's pipes is dropped: a CI run lost
// both ranks' one error line that way (OpenMPI 4.1; other launchers do the same, flux-core#3894).
// So a rank about to abort waits until the launcher has read its pipes (FIONREAD on a pipe counts
// the bytes still in it), then a little more for the launcher to write them out; never long.
void drain_output(std::chrono::milliseconds limit) {
  flush();
  std::fflush(stdout);
  std::fflush(stderr);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (unread_bytes(STDOUT_FILENO) + unread_bytes(STDERR_FILENO) > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace dpt::log
