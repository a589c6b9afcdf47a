// PreprocessPool: worker threads that map a function over 0..count-1 and hand the results back in
// order, with bounded prefetch. Used by the DataLoader for whole batches; usable for samples.
//
//   dpt::PreprocessPool pool(/*workers=*/4, /*queue_depth=*/8);
//   auto stream = pool.map<torch::Tensor>(n, [&](int64_t i) { return decode(i); });
//   while (auto t = stream.next()) use(*t);   // t for i = 0, 1, 2, ... in order
//
// Contract:
// - Order: next() returns the result for 0, 1, 2, ... whatever thread finished first.
// - Back-pressure: at most queue_depth items are in flight or waiting (claimed but not yet taken
//   by next()); workers sleep until the consumer catches up. Memory is bounded by queue_depth.
// - Errors: an exception thrown by fn(i) reaches the consumer, in order, from the next() that
//   would have returned item i, as a PreprocessError naming i and the original message; the job
//   stops (no further items are started).
// - Cancellation: destroying or cancel()ing a stream, starting a new map(), or destroying the pool
//   stops the job; workers finish the item they are running and drop its result. The destructor
//   joins every thread. fn must therefore return in finite time.
// - workers == 0 runs fn inline in next(), on the consumer's thread (handy for debugging).
// - One job at a time: map() cancels the previous stream of this pool.
// The pool holds nothing but the function it maps: never a model, never gradients.
#pragma once

#include <any>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dptrain/core/error.h"

namespace dpt {

// The failure of item `index` of a map. kind() is the original dpt::Error's kind, Data otherwise.
class PreprocessError : public Error {
 public:
  PreprocessError(ErrorKind kind, int64_t index, const std::string& message, std::exception_ptr cause)
      : Error(kind, message), index_(index), cause_(std::move(cause)) {}
  int64_t index() const { return index_; }
  // The exception fn threw, for std::rethrow_exception.
  const std::exception_ptr& cause() const { return cause_; }

 private:
  int64_t index_;
  std::exception_ptr cause_;
};

namespace detail {
struct PoolState;
struct PoolJob;

// The type-erased stream behind OrderedStream<T>.
class StreamCore {
 public:
  StreamCore() = default;
  StreamCore(std::shared_ptr<PoolState> state, std::shared_ptr<PoolJob> job);
  StreamCore(StreamCore&&) noexcept = default;
  StreamCore& operator=(StreamCore&& other) noexcept;
  ~StreamCore();

  std::optional<std::any> next();
  void cancel();
  int64_t size() const;

 private:
  std::shared_ptr<PoolState> state_;
  std::shared_ptr<PoolJob> job_;
};
}  // namespace detail

// The ordered results of one PreprocessPool::map. Move-only; destroying it cancels the job.
template <typename T>
class OrderedStream {
 public:
  OrderedStream() = default;
  explicit OrderedStream(detail::StreamCore core) : core_(std::move(core)) {}

  // The next result in order; nullopt after the last one. Throws PreprocessError (see above), or
  // InvalidArgumentError when the stream was cancelled or replaced.
  std::optional<T> next() {
    std::optional<std::any> item = core_.next();
    if (!item) return std::nullopt;
    return std::any_cast<T>(std::move(*item));
  }
  void cancel() { core_.cancel(); }
  int64_t size() const { return core_.size(); }

 private:
  detail::StreamCore core_;
};

class PreprocessPool {
 public:
  // queue_depth <= 0 picks 2 * workers (at least 2).
  explicit PreprocessPool(int workers, int queue_depth = 0);
  ~PreprocessPool();
  PreprocessPool(const PreprocessPool&) = delete;
  PreprocessPool& operator=(const PreprocessPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }
  int queue_depth() const { return queue_depth_; }

  // Maps fn over 0..count-1. T must be copy-constructible (it travels in a std::any).
  template <typename T>
  OrderedStream<T> map(int64_t count, std::function<T(int64_t)> fn) {
    return OrderedStream<T>(start([fn = std::move(fn)](int64_t i) { return std::any(fn(i)); }, count));
  }

 private:
  detail::StreamCore start(std::function<std::any(int64_t)> fn, int64_t count);

  int queue_depth_;
  std::shared_ptr<detail::PoolState> state_;
  std::vector<std::thread> threads_;
};

}  // namespace dpt
