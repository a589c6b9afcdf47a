// What a backend knows about its peers while a collective waits for them (private): the one
// interface behind "this collective is late / this peer is gone".
//
// Note [From a stuck rank to every rank's error]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// 1. Something stops a rank: it died (killed, crashed), hangs in its own code, or issued another
//    collective than its peers.
// 2. Its peers' next collective cannot finish. Each communicator has a *late detector* that knows
//    how long its oldest collective has run: the ProgressThread (MPI, store; liveness/
//    progress_thread.h) checks from the waiting side every 50 ms; the NCCL watchdog
//    (nccl/nccl_watchdog.h) polls the stream's events every 2 ms. Past the timeout
//    (DPTRAIN_TIMEOUT, 300 s) the collective is late.
// 3. Before the timeout, the detector asks the backend's PeerLiveness whether a peer is already
//    known to be gone (gone_peer): the store's heartbeats (store/store_watchdog.h, a silent peer
//    for DPTRAIN_PEER_TIMEOUT) and NCCL's asynchronous errors (a remote error) answer at once; MPI
//    needs none, mpirun ends the whole job when one rank dies.
// 4. When the collective is late, the detector asks once where the others are (explain_late): the
//    MPI world's answering thread (mpi/mpi_watchdog.h) gathers every rank's flight-recorder
//    position ("rank 3: not in a collective for 3.1 s; ranks 0, 1, 2: waiting in allreduce
//    #1813"). The communicator is then broken (every later call is refused with the reason), the
//    reason and this rank's flight record (liveness/flight_recorder.h) are logged.
// 5. The waiting call throws TimeoutError / CommunicationError naming the rank, the collective and
//    the reason; dpt::run_main prints it as one line and calls the fatal hook that dpt::Runtime
//    installed: MPI_Abort under MPI, an immediate exit otherwise (so the store's peers see the
//    connection drop). A thread blocked where no exception can reach it (a blocking MPI call run
//    inline, a CUDA synchronisation) is ended by the detector itself with dpt::fail_fast, exit 3.
// So every surviving rank exits non-zero within the timeout, and none waits forever.
#pragma once

#include <optional>
#include <string>

namespace dpt::detail {

class PeerLiveness {
 public:
  virtual ~PeerLiveness() = default;
  // Polled while a collective runs, so cheap: why a peer is known to be gone ("rank 2 stopped
  // responding (no heartbeat for 20 s)"), or nullopt while every peer may still come.
  virtual std::optional<std::string> gone_peer() { return std::nullopt; }
  // Asked once, when a collective is late: a line saying where the other ranks are; empty when
  // nothing is known.
  virtual std::string explain_late() { return {}; }
};

}  // namespace dpt::detail
