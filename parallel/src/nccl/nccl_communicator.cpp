#include "dptrain/parallel/nccl_communicator.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <cstring>
#include <exception>

#include "../fingerprint.h"
#include "../tcp_store.h"
#include "../tensor_checks.h"
#include "dptrain/core/config.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "nccl_check.h"
#include "nccl_state.h"
#include "nccl_watchdog.h"
#include "nccl_work.h"

#if DPTRAIN_HAVE_MPI
#include <mpi.h>
#endif

namespace dpt {

using detail::CollectiveKind;
using detail::describe;

namespace {

ncclDataType_t nccl_dtype(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt32: return ncclInt32;
    case torch::kInt64: return ncclInt64;
    case torch::kUInt8: return ncclUint8;
    default: DPT_THROW(InvalidArgumentError, "dtype ", c10::toString(dtype), " has no NCCL type");
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Product: return ncclProd;
  }
  return ncclSum;
}

bool mpi_is_up() {
#if DPTRAIN_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
#else
  return false;
#endif
}

}  // namespace

std::shared_ptr<NcclCommunicator> NcclCommunicator::create_world(const LaunchInfo& launch, const torch::Device& device,
                                                                 std::chrono::milliseconds timeout) {
  DPT_CHECK(device.is_cuda(), UnsupportedError, "nccl needs a CUDA device, got ", device);
  std::string who = detail::concat("nccl rank ", launch.rank, "/", launch.world_size);
  c10::cuda::CUDAGuard guard(device);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (launch.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id), who, ": creating the NCCL id");
  c10::intrusive_ptr<c10d::Store> store;
  if (launch.world_size > 1) {
    if (mpi_is_up()) {
#if DPTRAIN_HAVE_MPI
      int rc = MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
      DPT_CHECK(rc == MPI_SUCCESS, CommunicationError, who, ": broadcasting the NCCL id over MPI failed");
#endif
    } else {
      store = detail::connect_tcp_store(launch, timeout);
      const std::string key = "dptrain/nccl-unique-id";
      if (launch.rank == 0) {
        std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof(id));
        store->set(key, bytes);
      } else {
        auto bytes = store->get(key);
        DPT_CHECK(bytes.size() == sizeof(id), CommunicationError, who, ": the NCCL id from rank 0 has ",
                  bytes.size(), " bytes, expected ", sizeof(id));
        std::memcpy(&id, bytes.data(), sizeof(id));
      }
    }
  }
  auto comm = create(who, launch.world_size, launch.rank, &id, device, launch.local_rank, timeout);
  comm->state_->rendezvous = std::move(store);
  return comm;
}

std::shared_ptr<NcclCommunicator> NcclCommunicator::create(const std::string& who, int world_size, int rank,
                                                           const void* unique_id, const torch::Device& device,
                                                           int local_rank, std::chrono::milliseconds timeout) {
  c10::cuda::CUDAGuard guard(device);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; State::settle bounds the wait
  ncclUniqueId id;
  std::memcpy(&id, unique_id, sizeof(id));
  ncclComm_t comm = nullptr;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  ncclResult_t rc = ncclCommInitRankConfig(&comm, world_size, id, rank, &config);
  DPT_CHECK(comm != nullptr || rc == ncclSuccess || rc == ncclInProgress, CommunicationError, who,
            ": ncclCommInitRankConfig failed: ", ncclGetErrorString(rc));
  NCCL_CHECK(rc, who, ": ncclCommInitRankConfig");
  auto stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index());
  auto state = std::make_shared<State>(comm, stream, who, timeout);
  state->settle(rc, deadline, "creating the NCCL communicator (ncclCommInitRank)");
  return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(std::move(state), local_rank, device));
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state, int local_rank, const torch::Device& device)
    : state_(std::move(state)), local_rank_(local_rank), device_(device) {
  {
    std::lock_guard<std::mutex> lock(state_->nccl_mutex);
    ncclCommUserRank(state_->comm, &rank_);
    ncclCommCount(state_->comm, &size_);
  }
  check_collectives_ = detail::call_check_enabled();
  watchdog_ = std::make_unique<detail::NcclWatchdog>(state_);
}

NcclCommunicator::~NcclCommunicator() {
  // In-flight Work keeps the state (and so the stream) alive; the NCCL communicator goes now:
  // finalized when its collectives end within the timeout, aborted otherwise or while an
  // exception unwinds (peers may never finish them).
  if (!state_->broken()) {
    if (std::uncaught_exceptions() > 0) {
      state_->abort("the communicator was destroyed while an error unwound");
    } else if (!watchdog_->drain(state_->deadline_from_now())) {
      state_->abort(detail::concat("the communicator was destroyed with collectives that did not finish within ",
                                   state_->timeout_ms.load() / 1000.0, " s"));
    } else {
      c10::cuda::CUDAGuard guard(device_);
      state_->destroy(state_->deadline_from_now());
    }
  }
  watchdog_.reset();
}

std::string NcclCommunicator::who() const { return detail::concat("nccl rank ", rank_, "/", size_); }

void NcclCommunicator::set_timeout(std::chrono::milliseconds timeout) {
  DPT_CHECK(timeout.count() > 0, InvalidArgumentError, who(), ": timeout must be > 0 ms, got ", timeout.count());
  state_->timeout_ms = timeout.count();
}

std::chrono::milliseconds NcclCommunicator::timeout() const { return std::chrono::milliseconds(state_->timeout_ms); }

std::string NcclCommunicator::flight_record() const {
  return watchdog_ && watchdog_->recorder().enabled() ? watchdog_->recorder().dump() : std::string();
}

bool NcclCommunicator::is_broken() const { return state_->broken(); }

// The cross-rank call check (DPTRAIN_DEBUG=DETAIL): a host round trip, followed by the watchdog
// like any collective, so a peer that never answers is a timeout rather than a hang.
void NcclCommunicator::check_call(const std::string& description, const std::vector<int64_t>& fingerprint) {
  c10::cuda::CUDAStreamGuard on_nccl_stream(state_->stream);
  auto payload = torch::tensor(detail::fingerprint_payload(fingerprint), torch::kInt64).to(device_);
  ncclResult_t rc;
  {
    std::lock_guard<std::mutex> lock(state_->nccl_mutex);
    rc = ncclAllReduce(payload.data_ptr(), payload.data_ptr(), static_cast<size_t>(payload.numel()), ncclInt64,
                       ncclMax, state_->comm, state_->stream.stream());
  }
  NCCL_CHECK(rc, who(), ": ", description, ": checking the call against the other ranks");
  state_->settle(rc, state_->deadline_from_now(), description + " (call check)");
  auto done = std::make_shared<at::cuda::CUDAEvent>();
  done->record(state_->stream);
  watchdog_->watch(done, description + " (call check)");
  detail::NcclWork(state_, description + " (call check)", done, {payload}, /*blocks_host=*/true).wait();
  auto host = payload.to(torch::kCPU);
  detail::check_fingerprint(std::vector<int64_t>(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel()),
                            who(), description);
}

WorkPtr NcclCommunicator::enqueue(const std::string& description, const std::vector<int64_t>& fingerprint,
                                  const std::vector<torch::Tensor>& tensors,
                                  const std::function<int(void* stream)>& launch, bool blocks_host) {
  DPT_CHECK(!state_->broken(), CommunicationError, who(), ": cannot run ", description, ": ",
            state_->broken_reason());
  c10::cuda::CUDAGuard guard(device_);
  at::cuda::CUDAEvent ready;
  ready.record(c10::cuda::getCurrentCUDAStream(device_.index()));
  ready.block(state_->stream);
  if (check_collectives_) check_call(description, fingerprint);
  for (const auto& t : tensors) {
    c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(), state_->stream);
  }
  ncclResult_t rc;
  {
    std::lock_guard<std::mutex> lock(state_->nccl_mutex);
    DPT_CHECK(!state_->broken(), CommunicationError, who(), ": cannot run ", description, ": ",
              state_->broken_reason());
    rc = static_cast<ncclResult_t>(launch(state_->stream.stream()));
  }
  NCCL_CHECK(rc, who(), ": ", description);
  if (rc == ncclInProgress) state_->settle(rc, state_->deadline_from_now(), description);
  auto done = std::make_shared<at::cuda::CUDAEvent>();
  done->record(state_->stream);
  watchdog_->watch(done, description);
  return std::make_shared<detail::NcclWork>(state_, description, std::move(done), tensors, blocks_host);
}

WorkPtr NcclCommunicator::allreduce_async(torch::Tensor& tensor, ReduceOp op) {
  std::string what = detail::concat("allreduce(", to_string(op), ")");
  detail::check_tensor(tensor, who(), what + ": tensor", *this);
  detail::check_reduce_op(op, tensor.scalar_type(), who(), what);
  std::string description = detail::concat(what, " #", ++sequence_, " of ", describe(tensor));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Allreduce, static_cast<int64_t>(tensor.scalar_type()),
                                              tensor.numel(), static_cast<int64_t>(op));
  return enqueue(description, fingerprint, {tensor}, [&](void* stream) {
    if (tensor.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                             nccl_dtype(tensor.scalar_type()), nccl_op(op), state_->comm,
                             static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::broadcast_async(torch::Tensor& tensor, int root) {
  detail::check_tensor(tensor, who(), "broadcast: tensor", *this);
  DPT_CHECK(root >= 0 && root < size_, InvalidArgumentError, who(), ": broadcast: root ", root, " is not in [0, ",
            size_, ")");
  std::string description = detail::concat("broadcast from rank ", root, " #", ++sequence_, " of ", describe(tensor));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Broadcast, static_cast<int64_t>(tensor.scalar_type()),
                                              tensor.numel(), -1, root);
  return enqueue(description, fingerprint, {tensor}, [&](void* stream) {
    if (tensor.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                             nccl_dtype(tensor.scalar_type()), root, state_->comm, static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::allgather_async(const torch::Tensor& input, torch::Tensor& output) {
  detail::check_tensor(input, who(), "allgather: input", *this);
  detail::check_tensor(output, who(), "allgather: output", *this);
  detail::check_same_kind(input, output, who(), "allgather");
  DPT_CHECK(output.numel() == input.numel() * size_, InvalidArgumentError, who(), ": allgather: output has ",
            output.numel(), " elements but needs world size ", size_, " x input's ", input.numel());
  std::string description = detail::concat("allgather #", ++sequence_, " of ", describe(input));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::Allgather, static_cast<int64_t>(input.scalar_type()),
                                              input.numel());
  return enqueue(description, fingerprint, {input, output}, [&](void* stream) {
    if (input.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclAllGather(input.data_ptr(), output.data_ptr(), static_cast<size_t>(input.numel()),
                             nccl_dtype(input.scalar_type()), state_->comm, static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::reduce_scatter_async(const torch::Tensor& input, torch::Tensor& output, ReduceOp op) {
  std::string what = detail::concat("reduce_scatter(", to_string(op), ")");
  detail::check_tensor(input, who(), what + ": input", *this);
  detail::check_tensor(output, who(), what + ": output", *this);
  detail::check_same_kind(input, output, who(), what);
  detail::check_reduce_op(op, input.scalar_type(), who(), what);
  DPT_CHECK(input.numel() == output.numel() * size_, InvalidArgumentError, who(), ": ", what, ": input has ",
            input.numel(), " elements but needs world size ", size_, " x output's ", output.numel());
  std::string description = detail::concat(what, " #", ++sequence_, " of ", describe(input));
  auto fingerprint = detail::make_fingerprint(CollectiveKind::ReduceScatter, static_cast<int64_t>(input.scalar_type()),
                                              input.numel(), static_cast<int64_t>(op));
  return enqueue(description, fingerprint, {input, output}, [&](void* stream) {
    if (output.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclReduceScatter(input.data_ptr(), output.data_ptr(), static_cast<size_t>(output.numel()),
                                 nccl_dtype(input.scalar_type()), nccl_op(op), state_->comm,
                                 static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::barrier_async() {
  std::string description = detail::concat("barrier #", ++sequence_);
  auto token = torch::zeros({1}, torch::TensorOptions(torch::kInt32).device(device_));
  return enqueue(description, detail::make_fingerprint(CollectiveKind::Barrier), {token}, [&](void* stream) {
    return static_cast<int>(ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclInt32, ncclSum, state_->comm,
                             static_cast<cudaStream_t>(stream)));
  }, /*blocks_host=*/true);
}

std::shared_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  std::string description = detail::concat("split(color ", color, ", key ", key, ") #", ++sequence_);
  barrier_async()->wait();  // earlier collectives done, and every rank is here
  c10::cuda::CUDAGuard guard(device_);
  ncclComm_t child = nullptr;
  ncclResult_t rc;
  {
    std::lock_guard<std::mutex> lock(state_->nccl_mutex);
    rc = ncclCommSplit(state_->comm, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, nullptr);
  }
  NCCL_CHECK(rc, who(), ": ", description);
  // Non-blocking: the split is an operation of the parent, which must settle before anything else
  // uses it (seen on an H100: the next collective failed with "Attempt to use communicator before
  // the previous operation returned ncclSuccess"), and only then is `child` set.
  state_->settle(rc, state_->deadline_from_now(), description);
  if (child == nullptr) return nullptr;
  auto stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device_.index());
  auto state = std::make_shared<State>(child, stream, detail::concat(who(), " (split, color ", color, ")"), timeout());
  ncclResult_t child_state = ncclSuccess;
  ncclCommGetAsyncError(child, &child_state);
  state->settle(child_state, state->deadline_from_now(), description);  // the child inherits the non-blocking config
  return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(std::move(state), local_rank_, device_));
}

}  // namespace dpt
