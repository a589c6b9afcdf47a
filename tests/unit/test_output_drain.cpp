// dpt::log::drain_output: a rank about to MPI_Abort waits until the launcher has read its pipes
// (Note [Output before an abort]).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "dptrain/core/logging.h"

namespace {

// Points stdout at a fresh pipe for the test's lifetime (stdout, not stderr: gtest reports there
// only at the end of each test, after this is gone).
class StdoutIntoPipe {
 public:
  StdoutIntoPipe() {
    EXPECT_EQ(::pipe(fds_), 0);
    std::fflush(stdout);
    saved_ = ::dup(STDOUT_FILENO);
    ::dup2(fds_[1], STDOUT_FILENO);
  }
  ~StdoutIntoPipe() {
    std::fflush(stdout);
    ::dup2(saved_, STDOUT_FILENO);
    ::close(saved_);
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  int read_end() const { return fds_[0]; }

 private:
  int fds_[2] = {-1, -1};
  int saved_ = -1;
};

TEST(OutputDrain, WaitsUntilTheReaderHasTakenWhatWasWritten) {
  StdoutIntoPipe pipe;
  const std::string line = "the one error line\n";
  ASSERT_EQ(::write(STDOUT_FILENO, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  std::atomic<bool> taken{false};
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a launcher that is slow to read
    char buffer[64];
    ASSERT_EQ(::read(pipe.read_end(), buffer, sizeof(buffer)), static_cast<ssize_t>(line.size()));
    taken = true;
  });
  dpt::log::drain_output(std::chrono::seconds(20));
  EXPECT_TRUE(taken) << "drain_output returned while the line was still in the pipe";
  reader.join();
}

TEST(OutputDrain, GivesUpAtTheLimitWhenNobodyReads) {
  StdoutIntoPipe pipe;
  ASSERT_EQ(::write(STDOUT_FILENO, "x", 1), 1);
  const auto start = std::chrono::steady_clock::now();
  dpt::log::drain_output(std::chrono::milliseconds(200));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 0.2);
  EXPECT_LT(waited, 20.0) << "a reader that never comes must not hold an abort back";
}

}  // namespace
