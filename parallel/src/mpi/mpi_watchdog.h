// The MPI world's PeerLiveness (private, liveness/peer_liveness.h): where every rank is in its
// collectives, asked for when one rank's collective is late (Note [Flight recorder] in
// liveness/progress_thread.cpp). A dead MPI rank needs no detection here: mpirun ends the job.
//
// Each rank runs a small thread on a private duplicate of the world communicator that answers a
// query with its flight recorder's position. It needs nothing from the rank's main thread or its
// progress thread, so a rank that sleeps in its step, or whose progress thread sits in another
// collective, still answers; a dead rank does not, and is named as such. The thread polls a
// probe every 50 ms (docs/reliability.md has its measured cost).
// Needs MPI_THREAD_MULTIPLE; the communicator makes none otherwise.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "liveness/flight_recorder.h"
#include "liveness/peer_liveness.h"
#include "liveness/progress_thread.h"

namespace dpt::detail {

class MpiWatchdog final : public PeerLiveness {
 public:
  // Collective over `comm` (duplicated). `owner` holds the recorder to report.
  MpiWatchdog(MPI_Comm comm, std::shared_ptr<ProgressThread> owner);
  ~MpiWatchdog() override;
  MpiWatchdog(const MpiWatchdog&) = delete;
  MpiWatchdog& operator=(const MpiWatchdog&) = delete;

  // Every rank's position (this rank's own included), asking the others and waiting for their
  // answers up to `patience`; a rank that did not answer in time is {false, {}}.
  std::vector<std::pair<bool, FlightPosition>> gather(std::chrono::milliseconds patience);
  // explain_hang over gather(2 s): "rank 3: not in a collective for 3.1 s; ranks 0, 1, 2: ...".
  std::string explain_late() override;

 private:
  void serve();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::shared_ptr<ProgressThread> owner_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace dpt::detail
