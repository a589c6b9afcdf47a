#include "liveness/progress_thread.h"

#include <cctype>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/serialize.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/run_main.h"

namespace dpt::detail {

// Note [Collective timeouts]
// A collective whose peer died or never called it blocks the progress thread forever: neither MPI
// nor anything else can interrupt a blocking MPI call. The watchdog is therefore on the waiting
// side: Work::wait() checks every 50 ms whether the job on the progress thread has run longer
// than the timeout and then throws TimeoutError naming the collective. The communicator is then
// broken (later calls fail at once) and the process must go down: dpt::run_main calls the fatal
// hook that the Runtime installed, which MPI_Aborts the whole job, so every surviving rank exits
// non-zero instead of waiting. The stuck thread is detached, never joined.

// Note [Hand-off latency]
// A collective of a few KB takes a few microseconds in MPI; handing it to the progress thread and
// its result back through condition variables costs two thread wake-ups, several times that. So
// the idle thread looks at the queue for kHandOffSpin before it sleeps, and a waiter looks at its
// work for as long before it does: back-to-back small collectives (DDP's first buckets, the
// benchmark's) never pay a wake-up, and an idle communicator still costs nothing.

ProgressThread::ProgressThread(std::string owner, std::chrono::milliseconds timeout)
    : owner_(std::move(owner)), timeout_ms_(timeout.count()) {
  recorder_.set_owner(owner_);
}

std::shared_ptr<ProgressThread> ProgressThread::create(std::string owner, std::chrono::milliseconds timeout) {
  std::shared_ptr<ProgressThread> thread(new ProgressThread(std::move(owner), timeout), [](ProgressThread* t) {
    t->stop();
    if (!t->broken()) delete t;  // else leaked: the detached thread is still inside it
  });
  thread->start();
  return thread;
}

ProgressThread::~ProgressThread() = default;

void ProgressThread::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
}

void ProgressThread::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (!thread_.joinable()) return;
  if (broken_) {
    thread_.detach();  // stuck in a collective; see Note [Collective timeouts]
  } else {
    thread_.join();
  }
}

QueuedWorkPtr ProgressThread::submit(const std::string& description, std::function<void()> job) {
  DPT_CHECK(!broken_, CommunicationError, owner_, ": cannot run ", description,
            ": the communicator is broken by an earlier failure (", broken_reason_, ")");
  auto work = std::make_shared<QueuedWork>(description, std::move(job), shared_from_this());
  work->flight_index_ = recorder_.queued(description);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    DPT_ASSERT(!stopping_, "collective submitted to a communicator being destroyed");
    queue_.push_back(work);
    ++queued_;
  }
  queue_cv_.notify_one();
  return work;
}

void ProgressThread::set_liveness(std::shared_ptr<PeerLiveness> liveness) {
  std::lock_guard<std::mutex> lock(mutex_);
  liveness_ = std::move(liveness);
}

std::optional<std::string> ProgressThread::check_stalled() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (broken_) return broken_reason_;
  if (!running_) return std::nullopt;
  if (liveness_) {
    if (auto dead = liveness_->gone_peer()) {
      broken_reason_ = detail::concat(owner_, ": ", running_->description(), " cannot complete: ", *dead);
      broken_ = true;
      DPT_LOG_ERROR("{}", broken_reason_);
      return broken_reason_;
    }
  }
  auto elapsed = std::chrono::steady_clock::now() - running_since_;
  auto limit = std::chrono::milliseconds(timeout_ms_.load());
  if (elapsed <= limit) return std::nullopt;
  break_on_timeout(running_->description(), limit);
  DPT_LOG_ERROR("{}", broken_reason_);
  return broken_reason_;
}

void ProgressThread::break_on_timeout(const std::string& description, std::chrono::milliseconds limit) {
  broken_reason_ = detail::concat(owner_, ": ", description, " did not complete within ",
                                  std::chrono::duration<double>(limit).count(),
                                  " s (a peer rank died, hangs, or called a different collective; the limit is "
                                  "DPTRAIN_TIMEOUT / RuntimeOptions::timeout)");
  broken_ = true;
  report_stall();
}

// Note [Flight recorder]
// A timeout says which collective this rank waited in, not why. So the error also says where the
// other ranks are: PeerLiveness::explain_late (the MPI world's watchdog asks every rank for its
// recorder's position, ~2 s at most) gives "rank 3: at allreduce #1812 (completed), not in a
// collective for 3.1 s; ranks 0, 1, 2: waiting in allreduce #1813", and the last collectives of
// this rank go to the log (and to $DPTRAIN_FLIGHT_RECORDER_DIR) for a closer look.
void ProgressThread::report_stall() {
  if (!recorder_.enabled()) return;
  try {
    if (liveness_) {
      const std::string where = liveness_->explain_late();
      if (!where.empty()) broken_reason_ += "; flight recorder: " + where;
    }
    const std::string dump = recorder_.dump();
    DPT_LOG_ERROR("{}", dump);
    if (auto directory = env::get("DPTRAIN_FLIGHT_RECORDER_DIR")) {
      std::string name = owner_;
      for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
      const std::string path = *directory + "/flight-recorder-" + name + ".txt";
      write_file_atomic(path, Bytes(dump.begin(), dump.end()));
    }
  } catch (const std::exception& e) {
    DPT_LOG_ERROR("{}: the flight recorder could not report: {}", owner_, e.what());
  }
}

// Note [Inline collectives]
// A small collective costs more in hand-offs than in MPI: queueing it, waking this thread, the data
// moving to this thread's core and the result back (measured: a 64 KB all-reduce 22.5 us against
// MPI's 12.4 us on 2 cores). When nothing is queued or running, the communicator may run it on the
// caller's thread instead (mpi_communicator.cpp: CPU tensors up to DPTRAIN_MPI_INLINE_BYTES).
// Issue order is kept (the queue is empty and stays behind it), and this idle thread becomes the
// watchdog: a peer that never joins would leave the caller blocked in MPI, where no exception can
// reach it, so past the timeout the stall is reported as a timeout would be and the process ends
// (exit 3), which takes the job down as the fatal hook does.
bool ProgressThread::try_run_inline(const std::string& description, const std::function<void()>& job) {
  int64_t index = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    DPT_CHECK(!broken_, CommunicationError, owner_, ": cannot run ", description,
              ": the communicator is broken by an earlier failure (", broken_reason_, ")");
    if (!queue_.empty() || running_ || inline_running_ || stopping_) return false;
    inline_running_ = true;
    inline_description_ = description;
    running_since_ = std::chrono::steady_clock::now();
    index = recorder_.queued(description);
  }
  // No wake-up: the idle loop looks every 50 ms (a wake-up per call would cost more than the
  // hand-off this saves).
  recorder_.started(index);
  bool ok = false;
  struct Done {
    ProgressThread* thread;
    int64_t index;
    bool* ok;
    ~Done() {
      thread->recorder_.finished(index, *ok);
      bool queued_behind = false;
      {
        std::lock_guard<std::mutex> lock(thread->mutex_);
        thread->inline_running_ = false;
        queued_behind = !thread->queue_.empty();
      }
      if (queued_behind) thread->queue_cv_.notify_all();
    }
  } done{this, index, &ok};
  job();
  ok = true;
  return true;
}

void ProgressThread::watch_inline(std::unique_lock<std::mutex>& lock) {
  const auto limit = std::chrono::milliseconds(timeout_ms_.load());
  if (std::chrono::steady_clock::now() - running_since_ <= limit) {
    queue_cv_.wait_for(lock, std::chrono::milliseconds(50));
    return;
  }
  break_on_timeout(inline_description_, limit);
  const std::string reason = broken_reason_;
  lock.unlock();
  fail_fast(reason, kExitPeerFailure);
}

void ProgressThread::loop() {
  for (;;) {
    QueuedWorkPtr work;
    const auto spin_until = std::chrono::steady_clock::now() + kHandOffSpin;
    while (queued_.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < spin_until) {
      std::this_thread::yield();
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      for (;;) {
        if (inline_running_) {
          watch_inline(lock);  // the queue waits behind the inline collective
          continue;
        }
        if (stopping_ || !queue_.empty()) break;
        queue_cv_.wait_for(lock, std::chrono::milliseconds(50));  // also to watch inline collectives
      }
      if (queue_.empty()) return;  // stopping and drained
      work = std::move(queue_.front());
      queue_.pop_front();
      --queued_;
      running_ = work;
      running_since_ = std::chrono::steady_clock::now();
    }
    recorder_.started(work->flight_index_);
    work->run();
    recorder_.finished(work->flight_index_, work->error_ == nullptr);
    std::lock_guard<std::mutex> lock(mutex_);
    running_.reset();
  }
}

}  // namespace dpt::detail
