// A persistent pool of threads for DataParallel: task i of a run() goes to thread i, every step,
// so a replica always runs on the same thread (and its CUDA state stays warm). Task 0 runs on
// the calling thread. Internal to DataParallel.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dpt::detail {

class DeviceWorkers {
 public:
  // `tasks_per_run`: the most tasks one run() takes (threads started: tasks_per_run - 1).
  explicit DeviceWorkers(size_t tasks_per_run);
  ~DeviceWorkers();
  DeviceWorkers(const DeviceWorkers&) = delete;
  DeviceWorkers& operator=(const DeviceWorkers&) = delete;

  // Runs the tasks concurrently and waits for all of them. Returns, per task, the exception it
  // threw (null when it succeeded). Not reentrant: one run() at a time.
  std::vector<std::exception_ptr> run(const std::vector<std::function<void()>>& tasks);

 private:
  struct Slot {
    std::function<void()> task;
    std::exception_ptr error;
  };
  void worker_loop(size_t index);

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  std::vector<Slot> slots_;  // slots_[i] belongs to threads_[i], which runs task i + 1
  std::vector<std::thread> threads_;
  uint64_t generation_ = 0;
  size_t pending_ = 0;
  bool stopping_ = false;
};

}  // namespace dpt::detail
