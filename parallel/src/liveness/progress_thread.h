// One thread that runs a communicator's collectives one after another, in issue order (private).
//
// Why a thread and blocking calls rather than nonblocking MPI_I* + polling: a blocking
// MPI_Allreduce runs MPI's tuned algorithms at full bandwidth, while OpenMPI's nonblocking
// collectives only progress when someone calls MPI_Test; here the caller computes while the
// thread sits in the collective, and issue order (the order every rank must agree on) is kept by
// the FIFO. See [Collective timeouts] in progress_thread.cpp for what happens when a peer never
// shows up.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "liveness/flight_recorder.h"
#include "liveness/peer_liveness.h"
#include "liveness/queued_work.h"

namespace dpt::detail {

class ProgressThread : public std::enable_shared_from_this<ProgressThread> {
 public:
  // A started thread. `owner` names the communicator in messages ("mpi rank 1/4").
  // Dropping the last reference drains the queue and joins the thread - or, when a collective
  // timed out, detaches it and leaks this object on purpose: the thread still runs inside it.
  static std::shared_ptr<ProgressThread> create(std::string owner, std::chrono::milliseconds timeout);
  ~ProgressThread();
  ProgressThread(const ProgressThread&) = delete;
  ProgressThread& operator=(const ProgressThread&) = delete;


  // Queues `job`; throws CommunicationError when the thread is broken by an earlier timeout.
  QueuedWorkPtr submit(const std::string& description, std::function<void()> job);
  // Runs `job` on the calling thread, now, when nothing is queued or running (so issue order is
  // kept), with this thread as its watchdog: past the timeout it reports (flight recorder
  // included) and ends the process (dpt::fail_fast, exit 3), since a blocking MPI call cannot be
  // interrupted. False, without running it, when the thread is busy. See Note [Inline collectives].
  bool try_run_inline(const std::string& description, const std::function<void()>& job);

  void set_timeout(std::chrono::milliseconds timeout) { timeout_ms_ = timeout.count(); }
  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(timeout_ms_.load()); }
  const std::string& owner() const { return owner_; }

  // When the running job has exceeded the timeout: the message of the TimeoutError to throw (and
  // the thread becomes broken). std::nullopt otherwise.
  std::optional<std::string> check_stalled();
  // What the backend knows of its peers (Note [From a stuck rank to every rank's error] in
  // liveness/peer_liveness.h): gone_peer() fails the running job at once instead of after the
  // timeout, explain_late() is appended to the TimeoutError. nullptr drops it (an owner that
  // refers back to this thread drops it before it goes).
  void set_liveness(std::shared_ptr<PeerLiveness> liveness);
  bool broken() const { return broken_; }
  const FlightRecorder& recorder() const { return recorder_; }

 private:
  ProgressThread(std::string owner, std::chrono::milliseconds timeout);
  void start();
  // Joins the thread after the queued jobs ran; detaches it instead when a collective timed out
  // (the thread is then stuck in a call nobody can interrupt, and the process is going down).
  void stop();
  void loop();
  void report_stall();  // under mutex_, once, when a collective timed out (Note [Flight recorder])
  // Under mutex_: the collective `description` outlived `limit`: broken, with the reason and the report.
  void break_on_timeout(const std::string& description, std::chrono::milliseconds limit);
  void watch_inline(std::unique_lock<std::mutex>& lock);  // see Note [Inline collectives]

  const std::string owner_;
  std::atomic<long long> timeout_ms_;
  std::mutex mutex_;
  std::condition_variable queue_cv_;
  std::deque<QueuedWorkPtr> queue_;
  std::atomic<size_t> queued_{0};  // queue_.size(), readable without the mutex (the idle spin)
  bool stopping_ = false;
  std::thread thread_;
  // The job on the thread now and since when (under mutex_).
  QueuedWorkPtr running_;
  std::chrono::steady_clock::time_point running_since_;
  bool inline_running_ = false;  // a try_run_inline job is on its caller's thread (under mutex_)
  std::string inline_description_;
  std::shared_ptr<PeerLiveness> liveness_;
  FlightRecorder recorder_{FlightRecorder::capacity_from_env()};
  std::atomic<bool> broken_{false};
  std::string broken_reason_;
};

}  // namespace dpt::detail
