// How dptrain's threads call MPI (private to the MPI communicator).
//
// Every communicator has its own progress thread, whatever thread level MPI granted, so
// collectives of different communicators never queue behind each other: with one shared thread,
// ranks that issue collectives of two communicators in different orders deadlock (rank 0's thread
// sits in A's allreduce waiting for rank 1, whose thread sits in B's waiting for rank 0).
//  - MPI_THREAD_MULTIPLE: a collective is the blocking call on its thread (MPI's tuned algorithms
//    at full bandwidth, no polling).
//  - MPI_THREAD_SERIALIZED: no two threads may be inside MPI at once, so a collective is started
//    nonblocking under a process-wide lock and polled with MPI_Test, taking the lock for each poll
//    only; every other MPI call of dptrain takes the lock too (mpi_locked).
#pragma once

#include <mpi.h>

#include <functional>
#include <mutex>
#include <string>

namespace dpt::detail {

// True when MPI granted less than MPI_THREAD_MULTIPLE.
bool mpi_serialized();
// The lock every MPI call takes under MPI_THREAD_SERIALIZED.
std::mutex& mpi_serial_lock();

// Runs one collective: `blocking` under THREAD_MULTIPLE, else `start` + MPI_Test polling. A
// failure is a CommunicationError "<what>: <MPI's error string>".
void mpi_collective(const std::function<int()>& blocking, const std::function<int(MPI_Request*)>& start,
                    const std::string& what);

// Any other MPI call, under the lock when serialized; returns its result code.
int mpi_locked(const std::function<int()>& call);

}  // namespace dpt::detail
