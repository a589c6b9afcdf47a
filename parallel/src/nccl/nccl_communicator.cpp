#include "dptrain/parallel/nccl/nccl_communicator.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <cstring>
#include <exception>

#include "comm/fingerprint.h"
#include "runtime/rendezvous.h"
#include "dptrain/core/config.h"
#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "nccl_check.h"
#include "nccl_state.h"
#include "nccl_watchdog.h"
#include "nccl_work.h"

namespace dpt {

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

}  // namespace

std::shared_ptr<NcclCommunicator> NcclCommunicator::create_world(const LaunchInfo& launch, const torch::Device& device,
                                                                 std::chrono::milliseconds timeout) {
  DPT_CHECK(device.is_cuda(), UnsupportedError, "nccl needs a CUDA device, got ", device);
  std::string who = detail::concat("nccl rank ", launch.rank, "/", launch.world_size);
  c10::cuda::CUDAGuard guard(device);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (launch.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id), who, ": creating the NCCL id");
  std::vector<uint8_t> bytes(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof(id));
  auto store = detail::share_from_rank0(launch, bytes, "dptrain/nccl-unique-id", timeout, who);
  std::memcpy(&id, bytes.data(), sizeof(id));
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

namespace {

Communicator::Identity identity_of(NcclCommunicator::State& state, int local_rank, const torch::Device& device) {
  int rank = 0, size = 1;
  std::lock_guard<std::mutex> lock(state.nccl_mutex);
  ncclCommUserRank(state.comm, &rank);
  ncclCommCount(state.comm, &size);
  return {rank, size, local_rank, device};
}

}  // namespace

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state, int local_rank, const torch::Device& device)
    : Communicator("nccl", identity_of(*state, local_rank, device)), state_(std::move(state)) {
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
      c10::cuda::CUDAGuard guard(device());
      state_->destroy(state_->deadline_from_now());
    }
  }
  watchdog_.reset();
}

void NcclCommunicator::apply_timeout(std::chrono::milliseconds timeout) { state_->timeout_ms = timeout.count(); }

std::chrono::milliseconds NcclCommunicator::timeout() const { return std::chrono::milliseconds(state_->timeout_ms); }

std::string NcclCommunicator::flight_record() const {
  return watchdog_ && watchdog_->recorder().enabled() ? watchdog_->recorder().dump() : std::string();
}

bool NcclCommunicator::is_broken() const { return state_->broken(); }

std::string NcclCommunicator::broken_reason() const { return state_->broken_reason(); }

// The cross-rank call check (DPTRAIN_DEBUG=DETAIL): a host round trip, followed by the watchdog
// like any collective, so a peer that never answers is a timeout rather than a hang.
void NcclCommunicator::check_call(const Collective& call) {
  const std::string& description = call.description;
  c10::cuda::CUDAStreamGuard on_nccl_stream(state_->stream);
  auto payload = torch::tensor(detail::fingerprint_payload(call.fingerprint), torch::kInt64).to(device());
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

WorkPtr NcclCommunicator::enqueue(const Collective& call, const std::vector<torch::Tensor>& tensors,
                                  const std::function<int(void* stream)>& launch, bool blocks_host) {
  const std::string& description = call.description;
  c10::cuda::CUDAGuard guard(device());
  at::cuda::CUDAEvent ready;
  ready.record(c10::cuda::getCurrentCUDAStream(device().index()));
  ready.block(state_->stream);
  if (call.check_across_ranks) check_call(call);
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

WorkPtr NcclCommunicator::run_allreduce(const Collective& call, torch::Tensor& tensor, ReduceOp op) {
  return enqueue(call, {tensor}, [&](void* stream) {
    if (tensor.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                                          nccl_dtype(tensor.scalar_type()), nccl_op(op), state_->comm,
                                          static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::run_broadcast(const Collective& call, torch::Tensor& tensor, int root) {
  return enqueue(call, {tensor}, [&](void* stream) {
    if (tensor.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
                                          nccl_dtype(tensor.scalar_type()), root, state_->comm,
                                          static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::run_allgather(const Collective& call, const torch::Tensor& input, torch::Tensor& output) {
  return enqueue(call, {input, output}, [&](void* stream) {
    if (input.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclAllGather(input.data_ptr(), output.data_ptr(), static_cast<size_t>(input.numel()),
                                          nccl_dtype(input.scalar_type()), state_->comm,
                                          static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::run_reduce_scatter(const Collective& call, const torch::Tensor& input,
                                             torch::Tensor& output, ReduceOp op) {
  return enqueue(call, {input, output}, [&](void* stream) {
    if (output.numel() == 0) return static_cast<int>(ncclSuccess);
    return static_cast<int>(ncclReduceScatter(input.data_ptr(), output.data_ptr(),
                                              static_cast<size_t>(output.numel()), nccl_dtype(input.scalar_type()),
                                              nccl_op(op), state_->comm, static_cast<cudaStream_t>(stream)));
  });
}

WorkPtr NcclCommunicator::run_barrier(const Collective& call) {
  auto token = torch::zeros({1}, torch::TensorOptions(torch::kInt32).device(device()));
  return enqueue(call, {token}, [&](void* stream) {
    return static_cast<int>(ncclAllReduce(token.data_ptr(), token.data_ptr(), 1, ncclInt32, ncclSum, state_->comm,
                                          static_cast<cudaStream_t>(stream)));
  }, /*blocks_host=*/true);
}

std::shared_ptr<Communicator> NcclCommunicator::run_split(const Collective& call, int color, int key) {
  const std::string& description = call.description;
  barrier_async()->wait();  // earlier collectives done, and every rank is here
  c10::cuda::CUDAGuard guard(device());
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
  auto stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device().index());
  auto state = std::make_shared<State>(child, stream, detail::concat(who(), " (split, color ", color, ")"), timeout());
  ncclResult_t child_state = ncclSuccess;
  ncclCommGetAsyncError(child, &child_state);
  state->settle(child_state, state->deadline_from_now(), description);  // the child inherits the non-blocking config
  return std::shared_ptr<NcclCommunicator>(new NcclCommunicator(std::move(state), local_rank(), device()));
}

}  // namespace dpt
