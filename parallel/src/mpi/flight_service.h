// Where every rank of an MPI world is in its collectives, asked for when one rank's collective
// times out (private to the MPI communicator; Note [Flight recorder] in progress_thread.cpp).
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

#include "../flight_recorder.h"
#include "../progress_thread.h"

namespace dpt::detail {

class FlightService {
 public:
  // Collective over `comm` (duplicated). `owner` holds the recorder to report.
  FlightService(MPI_Comm comm, std::shared_ptr<ProgressThread> owner);
  ~FlightService();
  FlightService(const FlightService&) = delete;
  FlightService& operator=(const FlightService&) = delete;

  // Every rank's position (this rank's own included), asking the others and waiting for their
  // answers up to `patience`; a rank that did not answer in time is {false, {}}.
  std::vector<std::pair<bool, FlightPosition>> gather(std::chrono::milliseconds patience);

 private:
  void serve();

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::shared_ptr<ProgressThread> owner_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace dpt::detail
