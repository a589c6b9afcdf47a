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
#include "dptrain/parallel/reduce_op.h"
#include "dptrain/parallel/work.h"

namespace dpt {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Rank among the processes of this node; selects the CUDA device.
  virtual int local_rank() const = 0;
  virtual std::string backend_name() const = 0;

  // Allreduce in place over all ranks.
  virtual WorkPtr allreduce_async(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) = 0;
  // Copies root's tensor into every rank's tensor.
  virtual WorkPtr broadcast_async(torch::Tensor& tensor, int root) = 0;
  // output has size() * input.numel() elements; rank r's input lands in output's r-th slice.
  virtual WorkPtr allgather_async(const torch::Tensor& input, torch::Tensor& output) = 0;
  // input has size() * output.numel() elements; rank r receives the reduction of every rank's
  // r-th slice.
  virtual WorkPtr reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output,
                                       ReduceOp op = ReduceOp::Sum) = 0;
  virtual WorkPtr barrier_async() = 0;

  // Allreduces a list of tensors through one fused buffer (one collective instead of many).
  // All tensors share a dtype and device; each is overwritten with its reduced value.
  virtual WorkPtr allreduce_coalesced_async(std::vector<torch::Tensor>& tensors, ReduceOp op = ReduceOp::Sum);

  // A communicator over the ranks that passed the same color, ordered by key (then by rank).
  // Collective over this communicator. A negative color returns nullptr (rank not in any group).
  virtual std::shared_ptr<Communicator> split(int color, int key) = 0;

  // Timeout for every collective of this communicator (the watchdog's limit).
  virtual void set_timeout(std::chrono::milliseconds timeout) = 0;
  virtual std::chrono::milliseconds timeout() const = 0;

  // Blocking forms.
  void allreduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::Sum) { allreduce_blocking(tensor, op); }
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
  // process boundaries like plain values (see dptrain/core/serialize.h).
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
  virtual torch::Device device() const { return torch::kCPU; }
  // Whether collectives take tensors on `device`; by default only device() itself.
  virtual bool accepts_device(const torch::Device& device) const { return device == this->device(); }
  // InvalidArgumentError naming this rank, `what` ("allreduce(sum): tensor") and both devices
  // unless accepts_device(tensor.device()). Every backend checks every tensor argument with it.
  void check_device(const torch::Tensor& tensor, const std::string& what) const;

  // Whether each collective is first checked against the other ranks' call (kind, dtype, element
  // count, op, root): on under DPTRAIN_DEBUG=DETAIL, read when the communicator is created.
  virtual bool checks_calls() const { return false; }

  // True after a collective timed out or the backend reported a fatal error: every later call
  // throws CommunicationError, and the process should exit (see dpt::Runtime).
  virtual bool is_broken() const { return false; }

  // The flight recorder: this rank's last collectives (DPTRAIN_FLIGHT_RECORDER of them, default
  // 64), oldest first, one line each with its state and times; empty when off or not kept by the
  // backend. Logged by the communicator itself on a timeout, and by dpt::Runtime when an error
  // takes a multi-rank job down (docs/reliability.md).
  virtual std::string flight_record() const { return {}; }

 protected:
  // What allreduce() does. A backend may do better than async + wait when the caller blocks anyway
  // (MPI runs small CPU all-reduces on the caller's thread: mpi_communicator.cpp).
  virtual void allreduce_blocking(torch::Tensor& tensor, ReduceOp op) { allreduce_async(tensor, op)->wait(); }
};

using CommunicatorPtr = std::shared_ptr<Communicator>;

}  // namespace dpt
