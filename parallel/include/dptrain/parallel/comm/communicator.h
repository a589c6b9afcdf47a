// The one interface through which dptrain talks to other ranks.
//
// Backends (MpiCommunicator, NcclCommunicator, StoreCommunicator) live behind it and are chosen at
// run time by dpt::Runtime (see docs/communicators.md), so one
// binary holds all of them. Contracts shared by every backend:
//  - Every rank calls the same collectives in the same order with tensors of the same dtype and
//    element count. A violation is reported as CommunicationError, never silently reduced.
//  - Tensors are contiguous, on a device the communicator accepts (accepts_device: device() itself;
//    an MPI communicator on the CPU also takes CUDA tensors), and of a supported dtype: float32,
//    float64, float16, bfloat16, int32, int64, uint8. Any other device is an InvalidArgumentError
//    naming both devices: code that talks to a communicator creates its tensors on device().
//  - In-place ops (allreduce, broadcast) write their result into the tensor they were given.
//  - An *_async call returns at once; the tensors must stay alive and untouched until the Work's
//    wait() returns. Collectives complete in the order they were issued.
//  - A zero-element tensor is valid and completes at once.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "dptrain/core/serialize.h"
#include "dptrain/parallel/comm/collective.h"
#include "dptrain/parallel/comm/reduce_op.h"
#include "dptrain/parallel/comm/work.h"

namespace dpt {

class Communicator {
 public:
  // What a backend tells the checking layer about itself when it is created.
  struct Identity {
    int rank = 0;
    int size = 1;
    int local_rank = 0;
    torch::Device device{torch::kCPU};
  };

  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes of this node; selects the CUDA device.
  int local_rank() const { return local_rank_; }
  const std::string& backend_name() const { return backend_; }
  // "mpi rank 1/4": how every message of this communicator begins.
  std::string who() const;

  // Allreduce in place over all ranks.
  WorkPtr allreduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  // Copies root's tensor into every rank's tensor.
  WorkPtr broadcast_async(torch::Tensor& tensor, int root);
  // output has size() * input.numel() elements; rank r's input lands in output's r-th slice.
  WorkPtr allgather_async(const torch::Tensor& input, torch::Tensor& output);
  // input has size() * output.numel() elements; rank r receives the reduction of every rank's
  // r-th slice.
  WorkPtr reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output, ReduceOp op = ReduceOp::Sum);
  WorkPtr barrier_async();
  // Allreduces a list of tensors through one fused buffer (one collective instead of many).
  // All tensors share a dtype and device; each is overwritten with its reduced value.
  WorkPtr allreduce_coalesced_async(std::vector<torch::Tensor>& tensors, ReduceOp op = ReduceOp::Sum);

  // A communicator over the ranks that passed the same color, ordered by key (then by rank).
  // Collective over this communicator. A negative color returns nullptr (rank not in any group).
  std::shared_ptr<Communicator> split(int color, int key);

  // Timeout for every collective of this communicator (the watchdog's limit); must be > 0.
  void set_timeout(std::chrono::milliseconds timeout);
  virtual std::chrono::milliseconds timeout() const = 0;

  // Blocking forms.
  void allreduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum);
  void broadcast(torch::Tensor& tensor, int root) { broadcast_async(tensor, root)->wait(); }
  void allgather(const torch::Tensor& input, torch::Tensor& output) { allgather_async(input, output)->wait(); }
  void reduce_scatter(const torch::Tensor& input, torch::Tensor& output, ReduceOp op = ReduceOp::Sum) {
    reduce_scatter_async(input, output, op)->wait();
  }
  void barrier() { barrier_async()->wait(); }
  void allreduce_coalesced(std::vector<torch::Tensor>& tensors, ReduceOp op = ReduceOp::Sum) {
    allreduce_coalesced_async(tensors, op)->wait();
  }

  // Object collectives: serialized bytes, so tensors, state dicts and TorchScript modules cross
  // process boundaries like plain values (see dptrain/core/serialize.h; comm/object_collectives.cpp).
  // broadcast_bytes: root's bytes on every rank (other ranks' argument is ignored).
  Bytes broadcast_bytes(const Bytes& bytes, int root);
  // gather_bytes: every rank's bytes, indexed by rank, on every rank (an allgather).
  std::vector<Bytes> allgather_bytes(const Bytes& bytes);

  torch::Tensor broadcast_tensor(const torch::Tensor& tensor, int root);  // any shape/dtype/device
  NamedTensors broadcast_named_tensors(const NamedTensors& tensors, int root);
  torch::jit::Module broadcast_module(const torch::jit::Module* module, int root,
                                      const c10::optional<c10::Device>& device = c10::nullopt);

  // The device this communicator's tensors live on (CPU, or the rank's CUDA device for NCCL, and
  // for MPI in a job that trains on GPUs).
  torch::Device device() const { return device_; }
  // Whether collectives take tensors on `device`; by default only device() itself.
  virtual bool accepts_device(const torch::Device& device) const { return device == device_; }
  // InvalidArgumentError naming this rank, `what` ("allreduce(sum): tensor") and both devices
  // unless accepts_device(tensor.device()). Every tensor argument of every collective is checked.
  void check_device(const torch::Tensor& tensor, const std::string& what) const;

  // Whether each collective is first checked against the other ranks' call (kind, dtype, element
  // count, op, root): on under DPTRAIN_DEBUG=DETAIL, read when the communicator is created.
  bool checks_calls() const { return checks_calls_; }

  // True after a collective timed out or the backend reported a fatal error: every later call
  // throws CommunicationError, and the process should exit (see dpt::Runtime).
  virtual bool is_broken() const { return false; }

  // The flight recorder: this rank's last collectives (DPTRAIN_FLIGHT_RECORDER of them, default
  // 64), oldest first, one line each with its state and times; empty when off or not kept by the
  // backend. Logged by the communicator itself on a timeout, and by dpt::Runtime when an error
  // takes a multi-rank job down (docs/reliability.md).
  virtual std::string flight_record() const { return {}; }

 protected:
  Communicator(std::string backend, const Identity& identity);

  // Note [One checking layer]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~
  // The public collectives above are not virtual: they check the arguments (defined, contiguous,
  // supported dtype, on an accepted device, sizes, root, reduce op), refuse a broken communicator,
  // number and describe the call and build its fingerprint (comm/communicator.cpp), once for
  // every backend. A backend implements only the run_* functions below: each receives a call
  // already checked, and runs it - exchanging call.fingerprint with the other ranks first when
  // call.check_across_ranks, in whatever way keeps issue order on its transport (the MPI
  // progress thread, the NCCL stream, the store's keys).
  virtual WorkPtr run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) = 0;
  virtual WorkPtr run_broadcast(const Collective& call, torch::Tensor& tensor, int root) = 0;
  virtual WorkPtr run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) = 0;
  virtual WorkPtr run_reduce_scatter(const Collective& call, const torch::Tensor& input, torch::Tensor& output,
                                     ReduceOp op) = 0;
  virtual WorkPtr run_barrier(const Collective& call) = 0;
  virtual std::shared_ptr<Communicator> run_split(const Collective& call, int color, int key) = 0;
  // By default the tensors are fused into one buffer on their device and run as one allreduce.
  virtual WorkPtr run_allreduce_coalesced(const Collective& call, std::vector<torch::Tensor>& tensors, ReduceOp op);
  // What allreduce() does. A backend may do better than async + wait when the caller blocks anyway
  // (MPI runs small CPU all-reduces on the caller's thread: mpi_communicator.cpp).
  virtual void run_allreduce_blocking(const Collective& call, torch::Tensor& tensor, ReduceOp op) {
    run_allreduce(call, tensor, op)->wait();
  }
  virtual void apply_timeout(std::chrono::milliseconds timeout) = 0;
  // Why is_broken() is true, for the refusal of the next call.
  virtual std::string broken_reason() const { return "a collective failed earlier"; }

 private:
  // The next sequence number, the description "<what> #<n>[ of <described>]" and the fingerprint.
  Collective next_call(CollectiveKind kind, const std::string& what, const std::string& described, int64_t dtype = -1,
                       int64_t numel = -1, int64_t op = -1, int64_t root = -1);
  Collective checked_allreduce(const torch::Tensor& tensor, ReduceOp op);

  const std::string backend_;
  const int rank_;
  const int size_;
  const int local_rank_;
  const torch::Device device_;
  const bool checks_calls_;
  uint64_t sequence_ = 0;  // collectives issued so far, named in messages ("allreduce #12")
};

using CommunicatorPtr = std::shared_ptr<Communicator>;

}  // namespace dpt
