#include "comm_hooks/hook_thread.h"

#include <ATen/Parallel.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <future>
#include <optional>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// A Work whose completion is a future (the worker thread's job).
class FutureWork final : public Work {
 public:
  explicit FutureWork(std::shared_future<void> done) : done_(std::move(done)) {}
  void wait() override { done_.get(); }
  bool is_completed() override { return done_.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }

 private:
  std::shared_future<void> done_;
};

}  // namespace

HookThread::HookThread(std::string owner) : owner_(std::move(owner)), thread_([this] { loop(); }) {}

HookThread::~HookThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HookThread::loop() {
  // OpenMP's thread count is per calling thread: a new thread would run its kernels (PowerSGD's
  // matmuls) with one thread per core, whatever the process set with torch::set_num_threads. Take
  // the process's setting, as autograd's worker threads do.
  at::init_num_threads();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

WorkPtr HookThread::submit(std::function<void()> job, const c10::Device& device) {
  std::optional<c10::Stream> stream;
  if (!device.is_cpu()) stream = c10::impl::VirtualGuardImpl(device.type()).getStream(device);
  auto promise = std::make_shared<std::promise<void>>();
  std::shared_future<void> done = promise->get_future().share();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    DPT_CHECK(!stopping_, InvalidArgumentError, owner_, ": used while being destroyed");
    jobs_.push_back([job = std::move(job), stream, promise]() {
      try {
        std::optional<c10::StreamGuard> on_stream;
        if (stream) on_stream.emplace(*stream);
        torch::NoGradGuard no_grad;
        job();
        promise->set_value();
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
  }
  wake_.notify_one();
  return std::make_shared<FutureWork>(std::move(done));
}

}  // namespace dpt
