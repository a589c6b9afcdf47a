#include "dptrain/core/data/preprocess_pool.h"

#include <condition_variable>
#include <mutex>

namespace dpt {
namespace detail {

struct Slot {
  bool ready = false;
  std::any value;
  std::exception_ptr error;
};

// One map(): guarded by PoolState::mutex.
struct PoolJob {
  std::function<std::any(int64_t)> fn;
  int64_t count = 0;
  int64_t depth = 1;
  bool run_inline = false;
  int64_t next_item = 0;    // the next index a worker will claim
  int64_t consumed = 0;     // items next() has returned
  std::vector<Slot> slots;  // item i lives in slots[i % depth] between its claim and next()
  bool failed = false;      // an item threw: claim nothing more
  bool cancelled = false;
  std::string cancel_reason;  // empty when the stream itself cancelled (next() then ends quietly)

  bool claimable() const { return !cancelled && !failed && next_item < count && next_item < consumed + depth; }
};

struct PoolState {
  std::mutex mutex;
  std::condition_variable work_ready;    // workers: a claimable item, or stop
  std::condition_variable result_ready;  // consumer: its slot filled, or cancelled
  std::shared_ptr<PoolJob> current;
  bool stopping = false;
};

namespace {

void cancel_locked(PoolState& state, PoolJob& job, const std::string& reason) {
  if (!job.cancelled) {
    job.cancelled = true;
    job.cancel_reason = reason;
    for (Slot& slot : job.slots) slot = Slot{};  // free prefetched batches now
  }
  if (state.current.get() == &job) state.current.reset();
  state.work_ready.notify_all();
  state.result_ready.notify_all();
}

[[noreturn]] void rethrow_for_item(int64_t index, const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const PreprocessError&) {
    throw;  // already names its item (the DataLoader names the sample)
  } catch (const Error& e) {
    throw PreprocessError(e.kind(), index, concat("preprocessing item ", index, " failed: ", e.what()), error);
  } catch (const std::exception& e) {
    throw PreprocessError(ErrorKind::Data, index, concat("preprocessing item ", index, " failed: ", e.what()), error);
  } catch (...) {
    throw PreprocessError(ErrorKind::Data, index,
                          concat("preprocessing item ", index, " failed with a non-standard exception"), error);
  }
}

void worker_loop(const std::shared_ptr<PoolState>& state) {
  std::unique_lock<std::mutex> lock(state->mutex);
  while (true) {
    state->work_ready.wait(lock, [&] { return state->stopping || (state->current && state->current->claimable()); });
    if (state->stopping) return;
    std::shared_ptr<PoolJob> job = state->current;  // keeps fn alive while it runs unlocked
    const int64_t index = job->next_item++;
    lock.unlock();
    std::any value;
    std::exception_ptr error;
    try {
      value = job->fn(index);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (job->cancelled) continue;  // nobody wants it any more
    Slot& slot = job->slots[static_cast<size_t>(index % job->depth)];
    slot.value = std::move(value);
    slot.error = error;
    slot.ready = true;
    if (error) job->failed = true;
    state->result_ready.notify_all();
  }
}

}  // namespace

StreamCore::StreamCore(std::shared_ptr<PoolState> state, std::shared_ptr<PoolJob> job)
    : state_(std::move(state)), job_(std::move(job)) {}

StreamCore& StreamCore::operator=(StreamCore&& other) noexcept {
  if (this != &other) {
    cancel();
    state_ = std::move(other.state_);
    job_ = std::move(other.job_);
  }
  return *this;
}

StreamCore::~StreamCore() {
  cancel();
}

void StreamCore::cancel() {
  if (!job_) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (!job_->cancelled) cancel_locked(*state_, *job_, "");
}

int64_t StreamCore::size() const {
  return job_ ? job_->count : 0;
}

std::optional<std::any> StreamCore::next() {
  if (!job_) return std::nullopt;
  std::unique_lock<std::mutex> lock(state_->mutex);
  PoolJob& job = *job_;
  auto finish_cancelled = [&]() -> std::optional<std::any> {
    DPT_CHECK(job.cancel_reason.empty(), InvalidArgumentError, "PreprocessPool stream: ", job.cancel_reason);
    return std::nullopt;
  };
  if (job.consumed == job.count) return std::nullopt;
  if (job.cancelled) return finish_cancelled();

  if (job.run_inline) {
    const int64_t index = job.consumed++;
    lock.unlock();  // fn may be slow; nothing else touches an inline job
    try {
      return job.fn(index);
    } catch (...) {
      const std::exception_ptr error = std::current_exception();
      cancel();
      rethrow_for_item(index, error);
    }
  }

  Slot& slot = job.slots[static_cast<size_t>(job.consumed % job.depth)];
  state_->result_ready.wait(lock, [&] { return slot.ready || job.cancelled; });
  if (job.cancelled) return finish_cancelled();
  const int64_t index = job.consumed++;
  std::any value = std::move(slot.value);
  const std::exception_ptr error = slot.error;
  slot = Slot{};
  if (error) {
    cancel_locked(*state_, job, "");
    lock.unlock();
    rethrow_for_item(index, error);
  }
  state_->work_ready.notify_all();  // a slot is free: back-pressure released by one
  return value;
}

}  // namespace detail

PreprocessPool::PreprocessPool(int workers, int queue_depth)
    : queue_depth_(queue_depth > 0 ? queue_depth : std::max(2, 2 * workers)),
      state_(std::make_shared<detail::PoolState>()) {
  DPT_CHECK(workers >= 0, InvalidArgumentError, "PreprocessPool: workers must be >= 0, got ", workers);
  threads_.reserve(static_cast<size_t>(workers));
  for (int i = 0; i < workers; ++i) threads_.emplace_back(detail::worker_loop, state_);
}

PreprocessPool::~PreprocessPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
    if (state_->current) detail::cancel_locked(*state_, *state_->current, "the PreprocessPool was destroyed");
    state_->work_ready.notify_all();
  }
  for (std::thread& thread : threads_) thread.join();
}

detail::StreamCore PreprocessPool::start(std::function<std::any(int64_t)> fn, int64_t count) {
  DPT_CHECK(count >= 0, InvalidArgumentError, "PreprocessPool::map: count must be >= 0, got ", count);
  auto job = std::make_shared<detail::PoolJob>();
  job->fn = std::move(fn);
  job->count = count;
  job->depth = queue_depth_;
  job->run_inline = threads_.empty();
  job->slots.resize(static_cast<size_t>(queue_depth_));
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->current) {
    detail::cancel_locked(*state_, *state_->current, "replaced by a newer PreprocessPool::map()");
  }
  if (!job->run_inline) state_->current = job;
  state_->work_ready.notify_all();
  return detail::StreamCore(state_, job);
}

}  // namespace dpt
