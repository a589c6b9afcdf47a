// Communicator over NCCL: CUDA tensors on this rank's device.
//
//   dpt::Runtime runtime;                        // picks nccl when a CUDA device exists
//   auto grad = torch::randn({1 << 20}, runtime.device());
//   auto work = runtime.world()->allreduce_async(grad, dpt::ReduceOp::Avg);
//   ...                                          // the caller's stream runs on meanwhile
//   work->wait();                                // the caller's current stream now waits for it
//
// Streams: each collective runs on the communicator's own CUDA stream, behind an event recorded on
// the caller's current stream (so the tensor's producer finishes first); the tensors are
// recordStream'ed with the caching allocator so their memory is not reused while NCCL still uses
// it. Work::wait() never blocks the host: it makes the caller's current stream wait for the
// collective's end event, as PyTorch's ProcessGroupNCCL does; the host waits only where it reads a
// result (.item(), .cpu()) or calls barrier().
//
// Failures: a watchdog thread per communicator follows the collectives in flight (see
// nccl_watchdog.h). A collective that does not finish within the timeout, or an asynchronous NCCL
// error, aborts the communicator (ncclCommAbort); later calls and waits throw TimeoutError /
// CommunicationError with the reason, and the process ends after a grace period unless
// DPTRAIN_WATCHDOG_EXIT=0. The communicator is non-blocking, so its creation (ncclCommInitRank)
// and split are bounded by the timeout too: a rank that never shows up is a TimeoutError, not a
// hang. Destruction finalizes the communicator when its collectives finish within the timeout and
// aborts it otherwise (or while an exception unwinds).
//
// The unique id travels over MPI when MPI is initialised (mpirun), else through the TCP
// rendezvous at MASTER_ADDR:MASTER_PORT (c10d::TCPStore, rank 0 serves it for as long as the
// communicator lives). The cross-rank call check (DPTRAIN_DEBUG=DETAIL, see mpi_communicator.h)
// costs a small NCCL allreduce and a host round trip per collective here.
#pragma once

#include <memory>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/runtime/launch_info.h"

namespace dpt {

namespace detail {
class NcclWatchdog;
}

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the launch's ranks. `device` is this rank's CUDA device.
  static std::shared_ptr<NcclCommunicator> create_world(const LaunchInfo& launch, const torch::Device& device,
                                                        std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;

  std::chrono::milliseconds timeout() const override;
  bool is_broken() const override;
  std::string flight_record() const override;

  struct State;  // the NCCL communicator, stream and health, shared with in-flight Work

 protected:
  WorkPtr run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) override;
  WorkPtr run_broadcast(const Collective& call, torch::Tensor& tensor, int root) override;
  WorkPtr run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) override;
  WorkPtr run_reduce_scatter(const Collective& call, const torch::Tensor& input, torch::Tensor& output,
                             ReduceOp op) override;
  WorkPtr run_barrier(const Collective& call) override;
  std::shared_ptr<Communicator> run_split(const Collective& call, int color, int key) override;
  void apply_timeout(std::chrono::milliseconds timeout) override;
  std::string broken_reason() const override;

 private:
  NcclCommunicator(std::shared_ptr<State> state, int local_rank, const torch::Device& device);
  // Creates a non-blocking NCCL communicator, waiting for it at most `timeout`.
  static std::shared_ptr<NcclCommunicator> create(const std::string& who, int world_size, int rank,
                                                  const void* unique_id, const torch::Device& device, int local_rank,
                                                  std::chrono::milliseconds timeout);
  // Runs `launch` on the NCCL stream after the caller's stream, behind the fingerprint check.
  WorkPtr enqueue(const Collective& call, const std::vector<torch::Tensor>& tensors,
                  const std::function<int(void* stream)>& launch, bool blocks_host = false);
  void check_call(const Collective& call);

  std::shared_ptr<State> state_;
  std::unique_ptr<detail::NcclWatchdog> watchdog_;
};

}  // namespace dpt
