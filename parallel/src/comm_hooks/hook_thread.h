// The thread a multi-stage comm hook runs its stages on, one job after another in queue order.
//
// Not a ProgressThread (liveness/progress_thread.h): that one runs a communicator's single
// collectives and watches them for timeouts; a hook job issues several collectives through a
// communicator, each of them watched there, so this thread only keeps the jobs in order and off
// the backward pass.
//
// Multi-stage reductions (HierarchicalAllreduce, PowerSgd) issue several dependent collectives per
// call. Run on the caller's thread they would block the backward pass; run on a thread of their
// own in FIFO order, every rank still issues the same collectives in the same order, and DDP's comm
// hook only queues a bucket and waits for it at the end of backward.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "dptrain/parallel/comm/work.h"

namespace dpt {

class HookThread {
 public:
  // `owner` names the user in errors ("HierarchicalAllreduce").
  explicit HookThread(std::string owner);
  ~HookThread();  // finishes the queued jobs, then joins
  HookThread(const HookThread&) = delete;
  HookThread& operator=(const HookThread&) = delete;

  // Queues `job`; the returned Work completes when it has run (and rethrows what it threw). On a
  // GPU `device`, the job runs on the stream current for that device at the time of the call, so
  // it is ordered after the kernels that produced its input.
  WorkPtr submit(std::function<void()> job, const c10::Device& device);

 private:
  void loop();

  std::string owner_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dpt
