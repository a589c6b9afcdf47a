#include "device_workers.h"

#include <pthread.h>

#include <string>

#include "dptrain/core/error.h"

namespace dpt::detail {

DeviceWorkers::DeviceWorkers(size_t tasks_per_run) : slots_(tasks_per_run > 0 ? tasks_per_run - 1 : 0) {
  threads_.reserve(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) threads_.emplace_back([this, i] { worker_loop(i); });
}

DeviceWorkers::~DeviceWorkers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& thread : threads_) thread.join();
}

void DeviceWorkers::worker_loop(size_t index) {
  const std::string name = "dpt-replica-" + std::to_string(index + 1);
  pthread_setname_np(pthread_self(), name.c_str());
  uint64_t seen = 0;
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      task = std::move(slots_[index].task);
      slots_[index].task = nullptr;
    }
    if (!task) continue;  // no work for this thread in this run
    std::exception_ptr error;
    try {
      task();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      slots_[index].error = error;
      --pending_;
    }
    work_done_.notify_all();
  }
}

std::vector<std::exception_ptr> DeviceWorkers::run(const std::vector<std::function<void()>>& tasks) {
  DPT_ASSERT(tasks.size() <= slots_.size() + 1, "DeviceWorkers: ", tasks.size(), " tasks for ", slots_.size() + 1,
             " threads");
  std::vector<std::exception_ptr> errors(tasks.size());
  if (tasks.empty()) return errors;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_ = 0;
    for (size_t i = 1; i < tasks.size(); ++i) {
      if (!tasks[i]) continue;
      slots_[i - 1].task = tasks[i];
      slots_[i - 1].error = nullptr;
      ++pending_;
    }
    ++generation_;
  }
  if (tasks.size() > 1) work_ready_.notify_all();
  if (tasks[0]) {
    try {
      tasks[0]();
    } catch (...) {
      errors[0] = std::current_exception();
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [&] { return pending_ == 0; });
  for (size_t i = 1; i < tasks.size(); ++i) errors[i] = slots_[i - 1].error;
  return errors;
}

}  // namespace dpt::detail
