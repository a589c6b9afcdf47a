#include "nccl_watchdog.h"

#include <c10/cuda/CUDAFunctions.h>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"

namespace dpt::detail {
namespace {

// How often the thread looks while collectives are in flight; idle, it sleeps until woken.
constexpr auto kPollInterval = std::chrono::milliseconds(2);
// Time given to the program to report an aborted communicator itself before the process ends.
constexpr auto kExitGrace = std::chrono::seconds(10);

}  // namespace

NcclWatchdog::NcclWatchdog(std::shared_ptr<NcclCommunicator::State> state) : state_(std::move(state)) {
  recorder_.set_owner(state_->who);
  const auto device = state_->stream.device_index();
  thread_ = std::thread([this, device] {
    c10::cuda::set_device(device);  // no stray context on GPU 0
    loop();
  });
}

NcclWatchdog::~NcclWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NcclWatchdog::watch(std::shared_ptr<at::cuda::CUDAEvent> done, std::string description) {
  {
    // Enqueued on the stream: "running" from the recorder's point of view.
    const int64_t index = recorder_.queued(description);
    recorder_.started(index);
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({std::move(done), std::move(description), std::chrono::steady_clock::now(), index});
  }
  wake_.notify_one();
}

bool NcclWatchdog::drain(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mutex_);
  drained_.wait_until(lock, deadline, [this] { return pending_.empty() || state_->broken(); });
  return pending_.empty() && !state_->broken();
}

std::optional<std::string> NcclWatchdog::gone_peer() {
  const ncclResult_t error = state_->async_error();
  if (error == ncclSuccess || error == ncclInProgress) return std::nullopt;
  std::lock_guard<std::mutex> lock(mutex_);
  std::string what = pending_.empty() ? std::string("the communicator") : pending_.front().description;
  const char* detail = ncclGetLastError(nullptr);
  const bool peer_or_network = error == ncclRemoteError || error == ncclSystemError;
  return concat(state_->who, ": ", what, " failed: ", ncclGetErrorString(error),
                detail && *detail ? concat(" (", detail, ")") : std::string(),
                peer_or_network ? " (a peer rank died or the network failed)" : "", "; NCCL communicator aborted");
}

std::string NcclWatchdog::inspect() {
  if (auto gone = gone_peer()) return *gone;
  std::lock_guard<std::mutex> lock(mutex_);
  while (!pending_.empty() && pending_.front().done->query()) {
    recorder_.finished(pending_.front().flight_index, true);
    pending_.pop_front();
  }
  if (pending_.empty()) {
    drained_.notify_all();
    return "";
  }
  const auto limit = std::chrono::milliseconds(state_->timeout_ms.load());
  const auto& oldest = pending_.front();
  if (std::chrono::steady_clock::now() - oldest.issued > limit) {
    return concat(state_->who, ": ", oldest.description, " did not complete within ",
                  std::chrono::duration<double>(limit).count(),
                  " s (a peer rank died, hangs, or called a different collective); NCCL communicator aborted");
  }
  return "";
}

void NcclWatchdog::fail(const std::string& reason) {
  if (!state_->abort(reason)) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.clear();
  }
  drained_.notify_all();
  DPT_LOG_ERROR("{}", reason);
  if (recorder_.enabled()) DPT_LOG_ERROR("{}", recorder_.dump());
  if (!env::get_flag("DPTRAIN_WATCHDOG_EXIT", true)) return;
  std::unique_lock<std::mutex> lock(mutex_);
  if (!wake_.wait_for(lock, kExitGrace, [this] { return stopping_; })) {
    lock.unlock();
    fail_fast(reason, kExitPeerFailure);
  }
}

void NcclWatchdog::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (pending_.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      } else {
        wake_.wait_for(lock, kPollInterval, [this] { return stopping_; });
      }
      if (stopping_) return;
    }
    if (state_->broken()) {
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.clear();
      drained_.notify_all();
      continue;
    }
    try {
      std::string reason = inspect();
      if (!reason.empty()) fail(reason);
    } catch (const std::exception& e) {
      fail(concat(state_->who, ": the watchdog could not query the stream: ", e.what()));
    }
  }
}

}  // namespace dpt::detail
