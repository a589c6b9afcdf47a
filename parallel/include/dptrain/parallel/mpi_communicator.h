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
// garbage or hanging. DPTRAIN_CHECK_COLLECTIVES=0 turns the check off (benchmarks).
//
// Requires MPI_Init_thread to have run (dpt::Runtime does it). Each communicator (world and every
// split) has its own progress thread, so collectives of different communicators never queue behind
// each other; under MPI_THREAD_SERIALIZED the threads take turns inside MPI (nonblocking calls
// polled under one lock, see parallel/src/mpi/mpi_call.h).
#pragma once

#include <mpi.h>

#include <memory>
#include <string>

#include "dptrain/parallel/communicator.h"

namespace dpt {

namespace detail {
class ProgressThread;
class FlightService;
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

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend_name() const override { return "mpi"; }
  torch::Device device() const override { return device_; }
  bool accepts_device(const torch::Device& device) const override {
    return device_.is_cpu() ? (device.is_cpu() || device.is_cuda()) : device == device_;
  }

  WorkPtr allreduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) override;
  WorkPtr broadcast_async(torch::Tensor& tensor, int root) override;
  WorkPtr allgather_async(const torch::Tensor& input, torch::Tensor& output) override;
  WorkPtr reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                               ReduceOp op = ReduceOp::Sum) override;
  WorkPtr barrier_async() override;
  WorkPtr allreduce_coalesced_async(std::vector<torch::Tensor>& tensors, ReduceOp op = ReduceOp::Sum) override;
  std::shared_ptr<Communicator> split(int color, int key) override;

  void set_timeout(std::chrono::milliseconds timeout) override;
  std::chrono::milliseconds timeout() const override;
  bool is_broken() const override;
  bool checks_calls() const override { return check_collectives_; }
  std::string flight_record() const override;

 protected:
  void allreduce_blocking(torch::Tensor& tensor, ReduceOp op) override;

 public:

  // Whether the MPI library passes CUDA device pointers straight through (MPIX_Query_cuda_support).
  static bool cuda_aware();
  // MPI_THREAD_MULTIPLE was granted: each communicator runs its own progress thread.
  static bool thread_multiple();

  MPI_Comm handle() const { return comm_; }

 private:
  struct Fingerprint;
  MpiCommunicator(MPI_Comm owned_comm, int local_rank, const torch::Device& device,
                  std::shared_ptr<detail::ProgressThread> thread);

  std::string who() const;
  // CPU all-reduces up to this many bytes run on the caller's thread when the progress thread is
  // idle (DPTRAIN_MPI_INLINE_BYTES, default 128 KiB; 0: never).
  static int64_t inline_bytes();
  // MPI_Allreduce in place over `buffer` (host memory, or device memory with a CUDA-aware MPI), in
  // pieces of at most INT_MAX elements. Called on whichever thread runs the collective.
  void allreduce_in_place(torch::Tensor& buffer, ReduceOp op, const std::string& description) const;
  // Queues `body` behind the fingerprint exchange of `fingerprint`.
  WorkPtr submit(const std::string& description, const Fingerprint& fingerprint, std::function<void()> body);
  void exchange_fingerprint(const Fingerprint& fingerprint, const std::string& description) const;

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  torch::Device device_{torch::kCPU};
  bool check_collectives_ = true;
  uint64_t sequence_ = 0;  // collectives issued so far, named in messages ("allreduce #12")
  std::shared_ptr<detail::ProgressThread> thread_;
  // The world's answers to "where are you?" when a collective times out (mpi/flight_service.h).
  std::unique_ptr<detail::FlightService> flight_;
};

}  // namespace dpt
