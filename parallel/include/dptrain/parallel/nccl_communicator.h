// Communicator over NCCL: CUDA tensors on this rank's device.
//
//   dpt::Runtime runtime;                        // picks nccl when a CUDA device exists
//   auto grad = torch::randn({1 << 20}, runtime.device());
//   auto work = runtime.world()->allreduce_async(grad, dpt::ReduceOp::Avg);
//   ...                                          // the caller's stream runs on meanwhile
//   work->wait();                                // the caller's current stream now waits for it
//
// Streams: each collective runs on the communicator's own CUDA stream. It first waits (a CUDA
// event) for the work already queued on the caller's current stream, so the tensor's producer
// finishes first; the tensor is recordStream'ed with the caching allocator so its memory is not
// reused while NCCL still reads it. Work::wait() blocks the host until the collective's end event
// has fired - polling ncclCommGetAsyncError meanwhile - and then makes the caller's current stream
// wait for it too. A collective that does not finish within the timeout, or an asynchronous NCCL
// error, aborts the communicator (ncclCommAbort) and throws TimeoutError / CommunicationError;
// the communicator is broken afterwards.
//
// The unique id travels over MPI when MPI is initialised (mpirun), else through the TCP
// rendezvous at MASTER_ADDR:MASTER_PORT (c10d::TCPStore, rank 0 serves it).
// The cross-rank fingerprint check (see mpi_communicator.h) costs one tiny NCCL allreduce and a
// host sync per collective here; DPTRAIN_CHECK_COLLECTIVES=0 turns it off.
#pragma once

#include <memory>

#include "dptrain/parallel/communicator.h"
#include "dptrain/parallel/launch_info.h"

namespace dpt {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over the launch's ranks. `device` is this rank's CUDA device.
  static std::shared_ptr<NcclCommunicator> create_world(const LaunchInfo& launch, const torch::Device& device,
                                                        std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend_name() const override { return "nccl"; }
  torch::Device device() const override { return device_; }

  WorkPtr allreduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr broadcast_async(torch::Tensor& tensor, int root) override;
  WorkPtr allgather_async(const torch::Tensor& input, torch::Tensor& output) override;
  WorkPtr reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                               ReduceOp op = ReduceOp::Sum) override;
  WorkPtr barrier_async() override;
  std::shared_ptr<Communicator> split(int color, int key) override;

  void set_timeout(std::chrono::milliseconds timeout) override;
  std::chrono::milliseconds timeout() const override;
  bool is_broken() const override;

  struct State;  // the NCCL communicator, stream and health, shared with in-flight Work

 private:
  NcclCommunicator(std::shared_ptr<State> state, int local_rank, const torch::Device& device);
  std::string who() const;
  // Runs `launch` on the NCCL stream after the caller's stream, behind the fingerprint check.
  WorkPtr enqueue(const std::string& description, const std::vector<int64_t>& fingerprint,
                  const std::vector<torch::Tensor>& tensors, const std::function<void(void* stream)>& launch);

  std::shared_ptr<State> state_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  torch::Device device_;
  bool check_collectives_ = true;
  uint64_t sequence_ = 0;
};

}  // namespace dpt
