#include "dptrain/parallel/mpi/mpi_communicator.h"

#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

#include <climits>

#include "comm/fingerprint.h"
#include "liveness/progress_thread.h"
#include "mpi/mpi_work.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "mpi/mpi_watchdog.h"
#include "mpi_call.h"
#include "mpi_check.h"
#include "mpi_datatypes.h"

namespace dpt {

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
  std::shared_ptr<MpiCommunicator> world(new MpiCommunicator(comm, {rank, size, local_rank, device}, thread));
  // Every rank decides the same way (the same environment, the same MPI): the service's
  // communicator duplication is collective.
  if (size > 1 && thread->recorder().enabled() && thread_multiple()) {
    world->watchdog_ = std::make_shared<detail::MpiWatchdog>(comm, thread);
    thread->set_liveness(world->watchdog_);
  }
  return world;
}

MpiCommunicator::MpiCommunicator(MPI_Comm owned_comm, const Identity& identity,
                                 std::shared_ptr<detail::ProgressThread> thread)
    : Communicator("mpi", identity), comm_(owned_comm), thread_(std::move(thread)) {}

MpiCommunicator::~MpiCommunicator() {
  // The watchdog's thread stops answering before the communicators go (and the progress thread,
  // which it refers to, lets go of it first).
  if (watchdog_) thread_->set_liveness(nullptr);
  watchdog_.reset();
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

bool MpiCommunicator::thread_multiple() {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  return provided == MPI_THREAD_MULTIPLE;
}

MPI_Datatype MpiCommunicator::datatype(c10::ScalarType dtype) { return detail::mpi_datatype(dtype); }

MPI_Op MpiCommunicator::reduce_op(ReduceOp op, c10::ScalarType dtype) { return detail::mpi_op(op, dtype); }

bool MpiCommunicator::cuda_aware() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1;
#else
  return false;
#endif
}

void MpiCommunicator::apply_timeout(std::chrono::milliseconds timeout) { thread_->set_timeout(timeout); }

std::chrono::milliseconds MpiCommunicator::timeout() const { return thread_->timeout(); }

bool MpiCommunicator::is_broken() const { return thread_->broken(); }

void MpiCommunicator::exchange_fingerprint(const Collective& call) const {
  auto payload = detail::fingerprint_payload(call.fingerprint);
  const int count = static_cast<int>(payload.size());
  detail::mpi_collective(
      [&] { return MPI_Allreduce(MPI_IN_PLACE, payload.data(), count, MPI_INT64_T, MPI_MAX, comm_); },
      [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, payload.data(), count, MPI_INT64_T, MPI_MAX, comm_, r); },
      detail::concat(who(), ": ", call.description, ": checking the call against the other ranks"));
  detail::check_fingerprint(payload, who(), call.description);
}

WorkPtr MpiCommunicator::submit(const Collective& call, std::function<void()> body) {
  return thread_->submit(call.description, [this, call, body = std::move(body)] {
    if (call.check_across_ranks) exchange_fingerprint(call);
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

void MpiCommunicator::run_allreduce_blocking(const Collective& call, torch::Tensor& tensor, ReduceOp op) {
  // The caller waits anyway: a small CPU tensor goes through MPI on this thread when the progress
  // thread is idle (Note [Inline collectives] in liveness/progress_thread.cpp); anything else as async.
  const bool small_on_cpu = tensor.is_cpu() && tensor.numel() * tensor.element_size() <= inline_bytes();
  if (small_on_cpu && !call.check_across_ranks && tensor.numel() > 0 && size() > 1 &&
      thread_->try_run_inline(call.description, [&] {
        allreduce_in_place(tensor, op, call.description);
        if (op == ReduceOp::Avg) tensor.div_(size());
      })) {
    return;
  }
  run_allreduce(call, tensor, op)->wait();
}

WorkPtr MpiCommunicator::run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) {
  auto staged = detail::stage(tensor, /*copy_values=*/true, cuda_aware());
  const bool divide_on_device = op == ReduceOp::Avg && staged.buffer.is_cuda();
  auto work = submit(call, [this, buffer = staged.buffer, ready = staged.ready, op, divide_on_device,
                            description = call.description]() mutable {
    ready();
    allreduce_in_place(buffer, op, description);
    if (op == ReduceOp::Avg && !divide_on_device) buffer.div_(size());
  });
  auto copy = detail::copy_back({{staged, tensor}});
  if (divide_on_device) {
    const int size = this->size();
    copy = [tensor, size]() mutable { tensor.div_(size); };
  }
  if (!copy) return work;
  return std::make_shared<detail::FinishingWork>(std::move(work), std::move(copy));
}

WorkPtr MpiCommunicator::run_broadcast(const Collective& call, torch::Tensor& tensor, int root) {
  auto staged = detail::stage(tensor, /*copy_values=*/rank() == root, cuda_aware());
  auto work = submit(call, [this, buffer = staged.buffer, ready = staged.ready, root, description = call.description] {
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

WorkPtr MpiCommunicator::run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) {
  int count = checked_count(input.numel(), who() + ": allgather");
  auto in = detail::stage(input, /*copy_values=*/true, cuda_aware());
  auto out = detail::stage(output, /*copy_values=*/false, cuda_aware());
  auto work = submit(call, [this, in_buffer = in.buffer, ready = in.ready, out_buffer = out.buffer, count,
                            description = call.description] {
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

WorkPtr MpiCommunicator::run_reduce_scatter(const Collective& call, const torch::Tensor& input, torch::Tensor& output,
                                            ReduceOp op) {
  int count = checked_count(output.numel(), who() + ": reduce_scatter");
  auto in = detail::stage(input, /*copy_values=*/true, cuda_aware());
  auto out = detail::stage(output, /*copy_values=*/false, cuda_aware());
  const bool divide_on_device = op == ReduceOp::Avg && out.buffer.is_cuda();
  auto work = submit(call, [this, in_buffer = in.buffer, ready = in.ready, out_buffer = out.buffer, op, count,
                            divide_on_device, description = call.description]() mutable {
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
                       if (op == ReduceOp::Avg && !divide_on_device) out_buffer.div_(size());
                     });
  auto copy = detail::copy_back({{out, output}});
  if (divide_on_device) {
    const int size = this->size();
    copy = [output, size]() mutable { output.div_(size); };
  }
  return copy ? std::make_shared<detail::FinishingWork>(std::move(work), std::move(copy)) : work;
}

WorkPtr MpiCommunicator::run_barrier(const Collective& call) {
  return submit(call, [this, description = call.description] {
    detail::mpi_collective([&] { return MPI_Barrier(comm_); }, [&](MPI_Request* r) { return MPI_Ibarrier(comm_, r); },
                           detail::concat(who(), ": ", description));
  });
}

WorkPtr MpiCommunicator::run_allreduce_coalesced(const Collective& call, std::vector<torch::Tensor>& tensors,
                                                 ReduceOp op) {
  if (!tensors[0].is_cpu()) return Communicator::run_allreduce_coalesced(call, tensors, op);  // fused on the device
  // Fused on the caller's thread: the tensors are read now, as a single allreduce would.
  std::vector<torch::Tensor> flat_views;
  flat_views.reserve(tensors.size());
  for (const auto& t : tensors) flat_views.push_back(t.view(-1));
  torch::Tensor fused = torch::cat(flat_views);
  std::vector<torch::Tensor> targets = tensors;
  return submit(call, [this, fused, targets, op, description = call.description]() mutable {
    allreduce_in_place(fused, op, description);
    if (op == ReduceOp::Avg) fused.div_(size());
    int64_t offset = 0;
    for (auto& target : targets) {
      target.view(-1).copy_(fused.slice(0, offset, offset + target.numel()));
      offset += target.numel();
    }
  });
}

std::shared_ptr<Communicator> MpiCommunicator::run_split(const Collective& call, int color, int key) {
  auto result = std::make_shared<MPI_Comm>(MPI_COMM_NULL);  // outlives a wait() that times out
  auto work = submit(call, [this, color, key, description = call.description, result] {
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
  return std::shared_ptr<MpiCommunicator>(
      new MpiCommunicator(child, {child_rank, child_size, local_rank(), device()}, std::move(thread)));
}

}  // namespace dpt
