// PreprocessPool: order, back-pressure, error propagation, cancellation without deadlock.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

#include "dptrain/core/data/preprocess_pool.h"

namespace {

using namespace std::chrono_literals;

// Runs fn on a detached thread; a hang fails the test and ends the binary instead of blocking CI.
template <typename Fn>
void expect_finishes_within(std::chrono::seconds limit, Fn fn, const char* what) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread([fn = std::move(fn), done]() mutable {
    fn();
    done->set_value();
  }).detach();
  if (finished.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << what << " did not finish within " << limit.count() << " s (deadlock)";
    std::fflush(nullptr);
    std::_Exit(1);
  }
}

// Polls `condition` for up to 10 s (a loaded CI machine may start threads late).
template <typename Condition>
bool eventually(Condition condition) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Items finish out of order: later indices are faster.
int64_t slow_square(int64_t i) {
  std::this_thread::sleep_for(std::chrono::microseconds((16 - i % 16) * 200));
  return i * i;
}

}  // namespace

TEST(DataPool, ResultsComeInOrderForAnyWorkerCount) {
  for (int workers : {0, 1, 2, 4}) {
    dpt::PreprocessPool pool(workers, 3);
    auto stream = pool.map<int64_t>(40, slow_square);
    EXPECT_EQ(stream.size(), 40);
    for (int64_t i = 0; i < 40; ++i) {
      auto value = stream.next();
      ASSERT_TRUE(value.has_value()) << "workers=" << workers;
      EXPECT_EQ(*value, i * i) << "workers=" << workers;
    }
    EXPECT_FALSE(stream.next().has_value());
  }
}

TEST(DataPool, InlinePoolRunsOnTheConsumerThread) {
  dpt::PreprocessPool pool(0);
  const auto me = std::this_thread::get_id();
  auto stream = pool.map<bool>(3, [me](int64_t) { return std::this_thread::get_id() == me; });
  while (auto same = stream.next()) EXPECT_TRUE(*same);
}

TEST(DataPool, PrefetchIsBoundedByTheQueueDepth) {
  std::atomic<int> started{0};
  dpt::PreprocessPool pool(4, 3);
  auto stream = pool.map<int>(100, [&](int64_t i) {
    started++;
    return static_cast<int>(i);
  });
  // A consumer that does not consume: the workers fill the queue, then stop.
  EXPECT_TRUE(eventually([&] { return started.load() >= 3; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(started.load(), 3);
  ASSERT_EQ(*stream.next(), 0);
  EXPECT_TRUE(eventually([&] { return started.load() >= 4; }));  // one taken, one more started
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(started.load(), 4);
  int count = 1;
  while (stream.next()) ++count;
  EXPECT_EQ(count, 100);
}

TEST(DataPool, WorkerExceptionReachesTheConsumerWithTheIndex) {
  for (int workers : {0, 2}) {
    dpt::PreprocessPool pool(workers, 4);
    auto stream = pool.map<int>(20, [](int64_t i) -> int {
      if (i == 5) throw std::runtime_error("decoder exploded");
      return static_cast<int>(i);
    });
    for (int i = 0; i < 5; ++i) ASSERT_EQ(*stream.next(), i);  // everything before the failure
    try {
      stream.next();
      FAIL() << "no exception";
    } catch (const dpt::PreprocessError& e) {
      EXPECT_EQ(e.index(), 5);
      EXPECT_EQ(e.kind(), dpt::ErrorKind::Data);
      EXPECT_NE(std::string(e.what()).find("item 5"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("decoder exploded"), std::string::npos) << e.what();
      EXPECT_THROW(std::rethrow_exception(e.cause()), std::runtime_error);
    }
    EXPECT_FALSE(stream.next().has_value());  // the job stopped
  }
}

TEST(DataPool, DpterrorKindIsKept) {
  dpt::PreprocessPool pool(1);
  auto stream = pool.map<int>(2, [](int64_t) -> int { throw dpt::IoError("shard-3.bin: gone"); });
  try {
    stream.next();
    FAIL();
  } catch (const dpt::PreprocessError& e) {
    EXPECT_EQ(e.kind(), dpt::ErrorKind::Io);
  }
}

TEST(DataPool, DestroyingThePoolWithWorkersBlockedOnAFullQueueDoesNotDeadlock) {
  std::atomic<int> started{0};
  auto pool = std::make_unique<dpt::PreprocessPool>(4, 2);
  auto stream = std::make_unique<dpt::OrderedStream<int>>(pool->map<int>(1000, [&](int64_t i) {
    started++;
    return static_cast<int>(i);
  }));
  ASSERT_EQ(*stream->next(), 0);
  std::this_thread::sleep_for(50ms);  // the queue is full again; workers wait for room
  EXPECT_LE(started.load(), 3);
  expect_finishes_within(
      10s, [pool = std::move(pool)]() mutable { pool.reset(); }, "~PreprocessPool");
  // The orphaned stream says what happened instead of hanging.
  EXPECT_THROW(stream->next(), dpt::InvalidArgumentError);
}

TEST(DataPool, CancellingAStreamMidJobFreesTheWorkersForTheNextJob) {
  dpt::PreprocessPool pool(2, 2);
  {
    auto stream = pool.map<int>(1000, [](int64_t i) {
      std::this_thread::sleep_for(1ms);
      return static_cast<int>(i);
    });
    ASSERT_EQ(*stream.next(), 0);
  }  // destroyed mid-job
  auto second = pool.map<int>(5, [](int64_t i) { return static_cast<int>(i) + 100; });
  for (int i = 0; i < 3; ++i) EXPECT_EQ(*second.next(), 100 + i);
  // A newer map() replaces the older stream.
  auto third = pool.map<int>(5, [](int64_t i) { return static_cast<int>(i); });
  EXPECT_THROW(second.next(), dpt::InvalidArgumentError);
  EXPECT_EQ(*third.next(), 0);
}
