#include "liveness/queued_work.h"

#include <thread>

#include "dptrain/core/error.h"
#include "liveness/progress_thread.h"

namespace dpt::detail {

QueuedWork::QueuedWork(std::string description, std::function<void()> job,
                       std::shared_ptr<ProgressThread> thread)
    : description_(std::move(description)), job_(std::move(job)), thread_(thread) {}

void QueuedWork::run() {
  std::exception_ptr error;
  try {
    job_();
  } catch (...) {
    error = std::current_exception();
  }
  job_ = nullptr;  // release the tensors the job captured as soon as it is done
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    finished_ = true;
    error_ = error;
  }
  done_cv_.notify_all();
}

void QueuedWork::wait() {
  // Short slices: the stall check also looks at the job ahead of this one, whose start this
  // wait does not see.
  constexpr auto kSlice = std::chrono::milliseconds(50);
  // A small collective finishes within microseconds: look for a few before going to sleep, since
  // a condition-variable wake-up costs more than the collective (Note [Hand-off latency] in
  // progress_thread.cpp).
  const auto spin_until = std::chrono::steady_clock::now() + kHandOffSpin;
  while (!finished_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < spin_until) {
    std::this_thread::yield();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  while (!done_) {
    done_cv_.wait_for(lock, kSlice);
    if (done_) break;
    if (auto thread = thread_.lock()) {
      lock.unlock();
      auto stalled = thread->check_stalled();
      lock.lock();
      if (stalled && !done_) throw TimeoutError(*stalled);
    }
  }
  if (error_) std::rethrow_exception(error_);
}

bool QueuedWork::is_completed() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

}  // namespace dpt::detail
