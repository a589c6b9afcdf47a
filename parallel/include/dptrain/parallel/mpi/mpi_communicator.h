// Communicator over MPI (OpenMPI, MPICH): CPU tensors, and CUDA tensors (directly when MPI is
// CUDA-aware, else staged through pinned host memory).
//
// Every collective is queued to a progress thread that runs them in issue order with blocking MPI
// calls, so an *_async call returns at once and the caller computes while MPI moves the bytes:
//
//   auto work = comm->allreduce_async(grad, dpt::ReduceOp::Avg);
//   compute_next_layer();          // MPI progresses meanwhile
//   work->wait();                  // grad now holds the average over ranks
//
// Before each collective the ranks exchange a fingerprint (operation, dtype, element count, reduce
// op, root) in one tiny MPI_Allreduce; if they disagree, every rank throws the same
// CommunicationError ("ranks disagree on the element count: 10 .. 12") instead of reducing
// garbage or hanging (on under DPTRAIN_DEBUG=DETAIL; comm/communicator.h checks the arguments).
//
// Requires MPI_Init_thread to have run (dpt::Runtime does it). Each communicator (world and every
// split) has its own progress thread, so collectives of different communicators never queue behind
// each other; under MPI_THREAD_SERIALIZED the threads take turns inside MPI (nonblocking calls
// polled under one lock, see parallel/src/mpi/mpi_call.h).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "dptrain/parallel/comm/communicator.h"

namespace dpt {

namespace detail {
class ProgressThread;
class MpiWatchdog;
}

class MpiCommunicator final : public Communicator {
 public:
  // A communicator over a duplicate of MPI_COMM_WORLD (collective over the world; call it on the
  // thread that initialised MPI). `device`: where the job's tensors live. On the CPU the
  // communicator takes CPU and CUDA tensors; on a CUDA device (a GPU job over MPI) only that
  // device's tensors, like NCCL, so code written for one backend is right for the other.
  static std::shared_ptr<MpiCommunicator> create_world(int local_rank, std::chrono::milliseconds timeout,
                                                       const torch::Device& device = torch::kCPU);

  ~MpiCommunicator() override;

  bool accepts_device(const torch::Device& device) const override {
    return this->device().is_cpu() ? (device.is_cpu() || device.is_cuda()) : device == this->device();
  }
  std::chrono::milliseconds timeout() const override;
  bool is_broken() const override;
  std::string flight_record() const override;

  // Whether the MPI library passes CUDA device pointers straight through (MPIX_Query_cuda_support).
  static bool cuda_aware();
  // MPI_THREAD_MULTIPLE was granted: each communicator runs its own progress thread.
  static bool thread_multiple();

  MPI_Comm handle() const { return comm_; }
  // The MPI datatype and op this backend uses for `dtype` (float16 and bfloat16: 2-byte types with
  // ops of their own; Avg maps to the sum), for code that calls MPI beside a communicator (the
  // benchmark's raw reference). Needs MPI initialised.
  static MPI_Datatype datatype(c10::ScalarType dtype);
  static MPI_Op reduce_op(ReduceOp op, c10::ScalarType dtype);

 protected:
  WorkPtr run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) override;
  void run_allreduce_blocking(const Collective& call, torch::Tensor& tensor, ReduceOp op) override;
  WorkPtr run_broadcast(const Collective& call, torch::Tensor& tensor, int root) override;
  WorkPtr run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) override;
  WorkPtr run_reduce_scatter(const Collective& call, const torch::Tensor& input, torch::Tensor& output,
                             ReduceOp op) override;
  WorkPtr run_barrier(const Collective& call) override;
  WorkPtr run_allreduce_coalesced(const Collective& call, std::vector<torch::Tensor>& tensors, ReduceOp op) override;
  std::shared_ptr<Communicator> run_split(const Collective& call, int color, int key) override;
  void apply_timeout(std::chrono::milliseconds timeout) override;

 private:
  MpiCommunicator(MPI_Comm owned_comm, const Identity& identity, std::shared_ptr<detail::ProgressThread> thread);

  // CPU all-reduces up to this many bytes run on the caller's thread when the progress thread is
  // idle (DPTRAIN_MPI_INLINE_BYTES, default 128 KiB; 0: never).
  static int64_t inline_bytes();
  // MPI_Allreduce in place over `buffer` (host memory, or device memory with a CUDA-aware MPI), in
  // pieces of at most INT_MAX elements. Called on whichever thread runs the collective.
  void allreduce_in_place(torch::Tensor& buffer, ReduceOp op, const std::string& description) const;
  // Queues `body` on the progress thread, behind the fingerprint exchange when the call asks for it.
  WorkPtr submit(const Collective& call, std::function<void()> body);
  void exchange_fingerprint(const Collective& call) const;

  MPI_Comm comm_;
  std::shared_ptr<detail::ProgressThread> thread_;
  // The world's answers to "where are you?" when a collective times out (mpi/mpi_watchdog.h).
  std::shared_ptr<detail::MpiWatchdog> watchdog_;
};

}  // namespace dpt
