// A Work handle on a job run by a ProgressThread (private to the parallel library).
//
// The job's state moves queued -> running -> done (ok or with an error). wait() blocks until done
// and rethrows the job's error. It throws TimeoutError when the job (or the job ahead of it that
// holds the progress thread) has been running longer than the communicator's timeout: the
// progress thread is then stuck in a collective that some peer never joined, and the thread is
// marked broken so later jobs fail at once instead of queueing behind it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "dptrain/parallel/comm/work.h"

namespace dpt::detail {

// How long a waiter, and the idle progress thread, look for the other side before sleeping on a
// condition variable (Note [Hand-off latency] in progress_thread.cpp).
constexpr auto kHandOffSpin = std::chrono::microseconds(50);

class ProgressThread;

class QueuedWork final : public Work {
 public:
  QueuedWork(std::string description, std::function<void()> job, std::shared_ptr<ProgressThread> thread);

  void wait() override;
  bool is_completed() override;

  const std::string& description() const { return description_; }

 private:
  friend class ProgressThread;
  void run();  // called on the progress thread

  const std::string description_;
  std::function<void()> job_;
  std::weak_ptr<ProgressThread> thread_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::atomic<bool> finished_{false};  // done_, readable without the mutex (wait()'s short spin)
  std::exception_ptr error_;
  int64_t flight_index_ = 0;  // in the progress thread's flight recorder
};

using QueuedWorkPtr = std::shared_ptr<QueuedWork>;

}  // namespace dpt::detail
