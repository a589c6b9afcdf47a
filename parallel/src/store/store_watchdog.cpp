#include "store/store_watchdog.h"

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt::detail {
namespace {

std::string beat_key(int rank) { return concat("beat/", rank); }
std::string left_key(int rank) { return concat("left/", rank); }

}  // namespace

StoreWatchdog::StoreWatchdog(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                         std::chrono::milliseconds interval, std::chrono::milliseconds deadline)
    : store_(std::move(store)),
      rank_(rank),
      size_(size),
      interval_(interval),
      deadline_(deadline),
      last_count_(static_cast<size_t>(size), -1),
      last_change_(static_cast<size_t>(size), std::chrono::steady_clock::now()) {
  thread_ = std::thread([this] { loop(); });
}

StoreWatchdog::~StoreWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
  try {
    store_->set(left_key(rank_), std::vector<uint8_t>{1});
  } catch (...) {
    // Rank 0's store is gone already: nobody is left to tell.
  }
}

std::optional<std::string> StoreWatchdog::gone_peer() {
  std::lock_guard<std::mutex> lock(mutex_);
  return dead_;
}

void StoreWatchdog::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_ && !dead_) {
    lock.unlock();
    std::optional<std::string> found;
    try {
      beat_and_check();
    } catch (const std::exception& e) {
      std::string message = e.what();
      found = concat("lost the connection to rank 0's store (rank 0 died?): ", message.substr(0, message.find('\n')));
    }
    lock.lock();
    if (found && !stopping_) {
      dead_ = found;
      DPT_LOG_WARN("{}", *dead_);
      break;
    }
    stop_cv_.wait_for(lock, interval_, [this] { return stopping_; });
  }
}

void StoreWatchdog::beat_and_check() {
  store_->add(beat_key(rank_), 1);
  const auto now = std::chrono::steady_clock::now();
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    const auto count = store_->add(beat_key(peer), 0);
    auto& last = last_count_[static_cast<size_t>(peer)];
    auto& changed = last_change_[static_cast<size_t>(peer)];
    if (count != last) {
      last = count;
      changed = now;
      continue;
    }
    if (now - changed <= deadline_ || store_->check({left_key(peer)})) continue;
    std::lock_guard<std::mutex> lock(mutex_);
    dead_ = concat("rank ", peer, " stopped responding (no heartbeat for ",
                   std::chrono::duration_cast<std::chrono::seconds>(now - changed).count(),
                   " s; it died or hangs; the limit is DPTRAIN_PEER_TIMEOUT)");
    DPT_LOG_WARN("{}", *dead_);
    return;
  }
}

}  // namespace dpt::detail
