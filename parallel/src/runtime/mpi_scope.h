// MPI's lifetime in this process, as one RAII scope (private to the runtime), and the few things
// outside a communicator that need MPI: is it up, abort the job, broadcast the NCCL id.
//
// Implemented in mpi/mpi_scope.cpp; a build without MPI links runtime/mpi_absent.cpp instead,
// where MPI is never up, so the runtime needs no #if.
#pragma once

#include <cstddef>
#include <string>

namespace dpt::detail {

class MpiScope {
 public:
  // Whether this build has MPI.
  static bool available();
  // MPI is initialised and not yet finalised (by anyone: the program may own it).
  static bool is_up();
  // MPI_Abort(MPI_COMM_WORLD, exit_code) when MPI is up; returns otherwise.
  static void abort_job(int exit_code);
  // Rank 0's `bytes` bytes at `data` on every rank of MPI_COMM_WORLD (MPI_Bcast); `who` names the
  // rank in the error.
  static void broadcast_world(void* data, size_t bytes, const std::string& who);

  // Initialises MPI unless the program already did: thread level "multiple" or "serialized"
  // (DPTRAIN_MPI_THREAD_LEVEL), at least MPI_THREAD_SERIALIZED granted or UnsupportedError.
  explicit MpiScope(const std::string& thread_level);
  // Finalises MPI when this scope initialised it, unless leave_up() was called.
  ~MpiScope();
  MpiScope(const MpiScope&) = delete;
  MpiScope& operator=(const MpiScope&) = delete;

  // MPI's own view of the world (the truth when a launcher's variables are missing).
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Keep MPI up at the end of the scope: the job is going down and the fatal hook will abort it
  // (finalising would wait for peers that are stuck or gone).
  void leave_up() { leave_up_ = true; }

 private:
  bool owns_ = false;
  bool leave_up_ = false;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace dpt::detail
