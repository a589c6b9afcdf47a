#include "dptrain/parallel/mpi_communicator.h"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

#include <climits>

#include "../fingerprint.h"
#include "../progress_thread.h"
#include "../staged_work.h"
#include "../tensor_checks.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "flight_service.h"
#include "mpi_call.h"
#include "mpi_check.h"
#include "mpi_datatypes.h"

namespace dpt {

using detail::check_reduce_op;
using detail::CollectiveKind;
using detail::check_same_kind;
using detail::check_tensor;
using detail::describe;

namespace {

// MPI counts are ints: bigger tensors go in chunks of this many elements.
constexpr int64_t kMaxCount = INT_MAX / 2;

char* bytes_at(const torch::Tensor& tensor, int64_t element) {
  return static_cast<char*>(tensor.data_ptr()) + element * static_cast<int64_t>(tensor.element_size());
}

int checked_count(int64_t count, const std::string& what) {
  DPT_CHECK(count <= INT_MAX, UnsupportedError, what, ": ", count,
            " elements per rank exceed MPI's int count; split the tensor");
  return static_cast<int>(count);
}

}  // namespace

// What every rank must agree on for one collective (see fingerprint.h).
struct MpiCommunicator::Fingerprint {
  std::vector<int64_t> values;
  Fingerprint(CollectiveKind kind, int64_t dtype = -1, int64_t numel = -1, int64_t op = -1, int64_t root = -1)
      : values(detail::make_fingerprint(kind, dtype, numel, op, root)) {}
};

std::shared_ptr<MpiCommunicator> MpiCommunicator::create_world(int local_rank, std::chrono::milliseconds timeout,
                                                               const torch::Device& device) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  DPT_CHECK(initialized, InternalError, "MpiCommunicator::create_world needs MPI initialised (create a dpt::Runtime)");
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_CHECK(detail::mpi_locked([&] { return MPI_Comm_dup(MPI_COMM_WORLD, &comm); }),
            "mpi: creating the world communicator");
  MPI_CHECK(detail::mpi_locked([&] { return MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN); }),
            "mpi: creating the world communicator");
  int rank = 0, size = 1;
  detail::mpi_locked([&] { return MPI_Comm_rank(comm, &rank) | MPI_Comm_size(comm, &size); });
  auto thread = detail::ProgressThread::create(detail::concat("mpi rank ", rank, "/", size), timeout);
  std::shared_ptr<MpiCommunicator> world(new MpiCommunicator(comm, local_rank, device, thread));
  // Every rank decides the same way (the same environment, the same MPI): the service's
  // communicator duplication is collective.
  if (size > 1 && thread->recorder().enabled() && thread_multiple()) {
    world->flight_ = std::make_unique<detail::FlightService>(comm, thread);
    thread->set_stall_report([service = world->flight_.get(), rank] {
      return detail::explain_hang(rank, service->gather(std::chrono::seconds(2)));
    });
  }
  return world;
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned_comm, int local_rank, const torch::Device& device,
                                 std::shared_ptr<detail::ProgressThread> thread)
    : comm_(owned_comm), local_rank_(local_rank), device_(device), thread_(std::move(thread)) {
  detail::mpi_locked([&] { return MPI_Comm_rank(comm_, &rank_) | MPI_Comm_size(comm_, &size_); });
  check_collectives_ = detail::call_check_enabled();
}

MpiCommunicator::~MpiCommunicator() {
  flight_.reset();  // its thread stops answering before the communicators go
  // MPI_Comm_free goes through the progress thread (and the serial lock, see mpi_call.h), so no
  // other thread may call MPI. Skipped when MPI is finalised or the thread is stuck in a timeout.
  try {
    if (!thread_->broken()) {
      MPI_Comm comm = comm_;
      // Waiting also guarantees that no queued job of this communicator (they capture `this`)
      // runs after it is gone.
      thread_->submit("free communicator", [comm]() mutable {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) detail::mpi_locked([&] { return MPI_Comm_free(&comm); });
      })->wait();
    }
  } catch (...) {
    // A destructor must not throw; a leaked MPI_Comm is harmless at this point.
  }
  thread_.reset();
}

int64_t MpiCommunicator::inline_bytes() {
  // Above this, the caller's time is worth more than the hand-off: the collective goes to the
  // progress thread and overlaps with whatever the caller does next (DDP's backward).
  static const int64_t bytes = env::get_int_or("DPTRAIN_MPI_INLINE_BYTES", 128 * 1024);
  return bytes;
}

std::string MpiCommunicator::flight_record() const {
  return thread_->recorder().enabled() ? thread_->recorder().dump() : std::string();
}

std::string MpiCommunicator::who() const { return detail::concat("mpi rank ", rank_, "/", size_); }

bool MpiCommunicator::thread_multiple() {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  return provided == MPI_THREAD_MULTIPLE;
}

bool MpiCommunicator::cuda_aware() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

void MpiCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  DPT_CHECK(timeout.count() > 0, InvalidArgumentError, who(), ": timeout must be > 0 ms, got ", timeout.count());
  thread_->set_timeout(timeout);
}

std::chrono::milliseconds MpiCommunicator::timeout() const { return thread_->timeout(); }

bool MpiCommunicator::is_broken() const { return thread_->broken(); }

void MpiCommunicator::exchange_fingerprint(const Fingerprint& fingerprint, const std::string& description) const {
  auto payload = detail::fingerprint_payload(fingerprint.values);
  const int count = static_cast<int>(payload.size());
  detail::mpi_collective(
      [&] { return MPI_Allreduce(MPI_IN_PLACE, payload.data(), count, MPI_INT64_T, MPI_MAX, comm_); },
      [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, payload.data(), count, MPI_INT64_T, MPI_MAX, comm_, r); },
      detail::concat(who(), ": ", description, ": checking the call against the other ranks"));
  detail::check_fingerprint(payload, who(), description);
}

WorkPtr MpiCommunicator::submit(const std::string& description, const Fingerprint& fingerprint,
                                std::function<void()> body) {
  bool check = check_collectives_;
  return thread_->submit(description, [this, check, fingerprint, description, body = std::move(body)] {
    if (check) exchange_fingerprint(fingerprint, description);
    body();
  });
}

void MpiCommunicator::allreduce_in_place(torch::Tensor& buffer, ReduceOp op, const std::string& description) const {
  MPI_Datatype type = detail::mpi_datatype(buffer.scalar_type());
  MPI_Op mpi_op = detail::mpi_op(op, buffer.scalar_type());
  for (int64_t offset = 0; offset < buffer.numel(); offset += kMaxCount) {
    int count = static_cast<int>(std::min(kMaxCount, buffer.numel() - offset));
    char* data = bytes_at(buffer, offset);
    detail::mpi_collective([&] { return MPI_Allreduce(MPI_IN_PLACE, data, count, type, mpi_op, comm_); },
                           [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, mpi_op, comm_, r); },
                           detail::concat(who(), ": ", description));
  }
}

void MpiCommunicator::allreduce_blocking(torch::Tensor& tensor, ReduceOp op) {
  // The caller waits anyway: a small CPU tensor goes through MPI on this thread when the progress
  // thread is idle (Note [Inline collectives] in progress_thread.cpp); anything else as async.
  if (!tensor.is_cpu() || check_collectives_ || tensor.numel() * tensor.element_size() > inline_bytes()) {
    allreduce_async(tensor, op)->wait();
    return;
  }
  std::string what = detail::concat("allreduce(", to_string(op), ")");
  check_tensor(tensor, who(), what + ": tensor", *this);
  check_reduce_op(op, tensor.scalar_type(), who(), what);
  if (tensor.numel() == 0 || size_ == 1) {
    allreduce_async(tensor, op)->wait();
    return;
  }
  std::string description = detail::concat(what, " #", sequence_ + 1, " of ", describe(tensor));
  const bool ran = thread_->try_run_inline(description, [&] {
    allreduce_in_place(tensor, op, description);
    if (op == ReduceOp::Avg) tensor.div_(size_);
  });
  if (ran) {
    ++sequence_;
    return;
  }
  allreduce_async(tensor, op)->wait();
}

WorkPtr MpiCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  std::string what = detail::concat("allreduce(", to_string(op), ")");
  check_tensor(tensor, who(), what + ": tensor", *this);
  check_reduce_op(op, tensor.scalar_type(), who(), what);
  std::string description = detail::concat(what, " #", ++sequence_, " of ", describe(tensor));
  Fingerprint fingerprint(CollectiveKind::Allreduce, static_cast<int64_t>(tensor.scalar_type()), tensor.numel(),
                          static_cast<int64_t>(op));
  auto staged = detail::stage(tensor, /*copy_values=*/true, cuda_aware());
  const bool divide_on_device = op == ReduceOp::Avg && staged.buffer.is_cuda();
  auto work = submit(description, fingerprint,
                     [this, buffer = staged.buffer, ready = staged.ready, op, divide_on_device, description]() mutable {
                       ready();
                       allreduce_in_place(buffer, op, description);
                       if (op == ReduceOp::Avg && !divide_on_device) buffer.div_(size_);
                     });
  auto copy = detail::copy_back({{staged, tensor}});
  if (divide_on_device) {
    const int size = size_;
    copy = [tensor, size]() mutable { tensor.div_(size); };
  }
  if (!copy) return work;
  return std::make_shared<detail::FinishingWork>(std::move(work), std::move(copy));
}

WorkPtr MpiCommunicator::broadcast_async(torch::Tensor& tensor, int root) {
  check_tensor(tensor, who(), "broadcast: tensor", *this);
  DPT_CHECK(root >= 0 && root < size_, InvalidArgumentError, who(), ": broadcast: root ", root, " is not in [0, ",
            size_, ")");
  std::string description = detail::concat("broadcast from rank ", root, " #", ++sequence_, " of ", describe(tensor));
  Fingerprint fingerprint(CollectiveKind::Broadcast, static_cast<int64_t>(tensor.scalar_type()), tensor.numel(), -1,
                          root);
  auto staged = detail::stage(tensor, /*copy_values=*/rank_ == root, cuda_aware());
  auto work = submit(description, fingerprint, [this, buffer = staged.buffer, ready = staged.ready, root, description] {
    ready();
    MPI_Datatype type = detail::mpi_datatype(buffer.scalar_type());
    for (int64_t offset = 0; offset < buffer.numel(); offset += kMaxCount) {
      int count = static_cast<int>(std::min(kMaxCount, buffer.numel() - offset));
      char* data = bytes_at(buffer, offset);
      detail::mpi_collective([&] { return MPI_Bcast(data, count, type, root, comm_); },
                             [&](MPI_Request* r) { return MPI_Ibcast(data, count, type, root, comm_, r); },
                             detail::concat(who(), ": ", description));
    }
  });
  auto copy = detail::copy_back({{staged, tensor}});
  return copy ? std::make_shared<detail::FinishingWork>(std::move(work), std::move(copy)) : work;
}

WorkPtr MpiCommunicator::allgather_async(const torch::Tensor& input, torch::Tensor& output) {
  check_tensor(input, who(), "allgather: input", *this);
  check_tensor(output, who(), "allgather: output", *this);
  check_same_kind(input, output, who(), "allgather");
  DPT_CHECK(output.numel() == input.numel() * size_, InvalidArgumentError, who(), ": allgather: output has ",
            output.numel(), " elements but needs world size ", size_, " x input's ", input.numel());
  int count = checked_count(input.numel(), who() + ": allgather");
  std::string description = detail::concat("allgather #", ++sequence_, " of ", describe(input));
  Fingerprint fingerprint(CollectiveKind::Allgather, static_cast<int64_t>(input.scalar_type()), input.numel());
  auto in = detail::stage(input, /*copy_values=*/true, cuda_aware());
  auto out = detail::stage(output, /*copy_values=*/false, cuda_aware());
  auto work = submit(description, fingerprint,
                     [this, in_buffer = in.buffer, ready = in.ready, out_buffer = out.buffer, count, description] {
                       ready();
                       if (count == 0) return;
                       MPI_Datatype type = detail::mpi_datatype(in_buffer.scalar_type());
                       void* in = in_buffer.data_ptr();
                       void* out = out_buffer.data_ptr();
                       detail::mpi_collective(
                           [&] { return MPI_Allgather(in, count, type, out, count, type, comm_); },
                           [&](MPI_Request* r) { return MPI_Iallgather(in, count, type, out, count, type, comm_, r); },
                           detail::concat(who(), ": ", description));
                     });
  auto copy = detail::copy_back({{out, output}});
  return copy ? std::make_shared<detail::FinishingWork>(std::move(work), std::move(copy)) : work;
}

WorkPtr MpiCommunicator::reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) {
  std::string what = detail::concat("reduce_scatter(", to_string(op), ")");
  check_tensor(input, who(), what + ": input", *this);
  check_tensor(output, who(), what + ": output", *this);
  check_same_kind(input, output, who(), what);
  check_reduce_op(op, input.scalar_type(), who(), what);
  DPT_CHECK(input.numel() == output.numel() * size_, InvalidArgumentError, who(), ": ", what, ": input has ",
            input.numel(), " elements but needs world size ", size_, " x output's ", output.numel());
  int count = checked_count(output.numel(), who() + ": " + what);
  std::string description = detail::concat(what, " #", ++sequence_, " of ", describe(input));
  Fingerprint fingerprint(CollectiveKind::ReduceScatter, static_cast<int64_t>(input.scalar_type()), input.numel(),
                          static_cast<int64_t>(op));
  auto in = detail::stage(input, /*copy_values=*/true, cuda_aware());
  auto out = detail::stage(output, /*copy_values=*/false, cuda_aware());
  const bool divide_on_device = op == ReduceOp::Avg && out.buffer.is_cuda();
  auto work = submit(description, fingerprint,
                     [this, in_buffer = in.buffer, ready = in.ready, out_buffer = out.buffer, op, count,
                      divide_on_device, description]() mutable {
                       ready();
                       if (count == 0) return;
                       MPI_Datatype type = detail::mpi_datatype(in_buffer.scalar_type());
                       void* in = in_buffer.data_ptr();
                       void* out = out_buffer.data_ptr();
                       MPI_Op mpi_op = detail::mpi_op(op, in_buffer.scalar_type());
                       detail::mpi_collective(
                           [&] { return MPI_Reduce_scatter_block(in, out, count, type, mpi_op, comm_); },
                           [&](MPI_Request* r) {
                             return MPI_Ireduce_scatter_block(in, out, count, type, mpi_op, comm_, r);
                           },
                           detail::concat(who(), ": ", description));
                       if (op == ReduceOp::Avg && !divide_on_device) out_buffer.div_(size_);
                     });
  auto copy = detail::copy_back({{out, output}});
  if (divide_on_device) {
    const int size = size_;
    copy = [output, size]() mutable { output.div_(size); };
  }
  return copy ? std::make_shared<detail::FinishingWork>(std::move(work), std::move(copy)) : work;
}

WorkPtr MpiCommunicator::barrier_async() {
  std::string description = detail::concat("barrier #", ++sequence_);
  return submit(description, Fingerprint(CollectiveKind::Barrier),
                [this, description] {
                  detail::mpi_collective([&] { return MPI_Barrier(comm_); },
                                         [&](MPI_Request* r) { return MPI_Ibarrier(comm_, r); },
                                         detail::concat(who(), ": ", description));
                });
}

WorkPtr MpiCommunicator::allreduce_coalesced_async(std::vector<torch::Tensor>& tensors, ReduceOp op) {
  std::string what = detail::concat("allreduce_coalesced(", to_string(op), ")");
  DPT_CHECK(!tensors.empty(), InvalidArgumentError, who(), ": ", what, ": the tensor list is empty");
  if (!tensors[0].is_cpu()) return Communicator::allreduce_coalesced_async(tensors, op);  // fused on the device
  for (size_t i = 0; i < tensors.size(); ++i) {
    check_tensor(tensors[i], who(), detail::concat(what, ": tensor ", i), *this);
    check_same_kind(tensors[0], tensors[i], who(), detail::concat(what, ": tensors 0 and ", i));
  }
  check_reduce_op(op, tensors[0].scalar_type(), who(), what);
  // Fused on the caller's thread: the tensors are read now, as a single allreduce would.
  std::vector<torch::Tensor> flat_views;
  flat_views.reserve(tensors.size());
  for (const auto& t : tensors) flat_views.push_back(t.view(-1));
  torch::Tensor fused = torch::cat(flat_views);
  std::string description = detail::concat(what, " #", ++sequence_, " of ", tensors.size(), " tensors, ",
                                           describe(fused));
  Fingerprint fingerprint(CollectiveKind::Coalesced, static_cast<int64_t>(fused.scalar_type()), fused.numel(),
                          static_cast<int64_t>(op), static_cast<int64_t>(tensors.size()));
  std::vector<torch::Tensor> targets = tensors;
  return submit(description, fingerprint, [this, fused, targets, op, description]() mutable {
    MPI_Datatype type = detail::mpi_datatype(fused.scalar_type());
    MPI_Op mpi_op = detail::mpi_op(op, fused.scalar_type());
    for (int64_t offset = 0; offset < fused.numel(); offset += kMaxCount) {
      int count = static_cast<int>(std::min(kMaxCount, fused.numel() - offset));
      char* data = bytes_at(fused, offset);
      detail::mpi_collective([&] { return MPI_Allreduce(MPI_IN_PLACE, data, count, type, mpi_op, comm_); },
                             [&](MPI_Request* r) {
                               return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, mpi_op, comm_, r);
                             },
                             detail::concat(who(), ": ", description));
    }
    if (op == ReduceOp::Avg) fused.div_(size_);
    int64_t offset = 0;
    for (auto& target : targets) {
      target.view(-1).copy_(fused.slice(0, offset, offset + target.numel()));
      offset += target.numel();
    }
  });
}

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key) {
  std::string description = detail::concat("split(color ", color, ", key ", key, ") #", ++sequence_);
  auto result = std::make_shared<MPI_Comm>(MPI_COMM_NULL);  // outlives a wait() that times out
  auto work = submit(description, Fingerprint(CollectiveKind::Split), [this, color, key, description, result] {
    MPI_CHECK(detail::mpi_locked([&] { return MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, result.get()); }),
              who(), ": ", description);
    if (*result != MPI_COMM_NULL) {
      MPI_CHECK(detail::mpi_locked([&] { return MPI_Comm_set_errhandler(*result, MPI_ERRORS_RETURN); }), who(), ": ",
                description);
    }
  });
  work->wait();
  MPI_Comm child = *result;
  if (child == MPI_COMM_NULL) return nullptr;
  // Its own progress thread at every thread level (see mpi_call.h).
  int child_rank = 0, child_size = 1;
  detail::mpi_locked([&] { return MPI_Comm_rank(child, &child_rank) | MPI_Comm_size(child, &child_size); });
  auto thread = detail::ProgressThread::create(
      detail::concat("mpi rank ", child_rank, "/", child_size, " (split of ", who(), ")"), timeout());
  return std::shared_ptr<MpiCommunicator>(new MpiCommunicator(child, local_rank_, device_, std::move(thread)));
}

}  // namespace dpt
