// Files read and written safely (issue 30): only regular files are read, a write is atomic and
// cleans up after killed writers, a directory lock excludes a second holder, checked arithmetic
// refuses to wrap, and foreign exception messages become the line that says what went wrong.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <fstream>
#include <limits>

#include "dptrain/core/checked_math.h"
#include "dptrain/core/directory_lock.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/run_main.h"
#include "dptrain/core/serialize.h"
#include "dptrain/core/stale_files.h"
#include "dptrain/core/stop_request.h"

namespace {

class SafeFiles : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = dpt::fs::make_temp_directory("dptrain-safe-files"); }
  void TearDown() override { dpt::fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dpt::fs::join(dir_, name); }
  std::string dir_;
};

// A process that has exited (and been reaped): its pid names no process.
pid_t dead_pid() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

}  // namespace

TEST_F(SafeFiles, ReadFileRefusesAFifoInsteadOfWaitingForAWriter) {
  ASSERT_EQ(::mkfifo(path("pipe.pt").c_str(), 0644), 0);
  try {
    dpt::read_file(path("pipe.pt"));
    FAIL() << "read a FIFO";
  } catch (const dpt::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("pipe.pt: not a regular file"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dpt::read_file(path("missing.pt")), dpt::IoError);
  EXPECT_THROW(dpt::read_file(dir_), dpt::IoError);
}

TEST_F(SafeFiles, ReadFileBoundedRefusesALargerFile) {
  dpt::write_file_atomic(path("big"), dpt::Bytes(100, 'x'));
  EXPECT_EQ(dpt::read_file_bounded(path("big"), 100, "--config").size(), 100u);
  EXPECT_THROW(dpt::read_file_bounded(path("big"), 99, "--config"), dpt::IoError);
}

TEST_F(SafeFiles, AtomicWriteRemovesTheTemporaryFilesOfDeadWritersOnly) {
  const pid_t dead = dead_pid();
  const std::string stale = path("model.pt.tmp." + std::to_string(dead));
  const std::string alive = path("model.pt.tmp." + std::to_string(::getppid()));  // a running process
  const std::string other = path("other.pt.tmp." + std::to_string(dead));         // another file's
  for (const auto& p : {stale, alive, other}) std::ofstream(p) << "partial";
  dpt::write_file_atomic(path("model.pt"), dpt::Bytes{'o', 'k'});
  EXPECT_FALSE(dpt::fs::exists(stale));
  EXPECT_TRUE(dpt::fs::exists(alive));
  EXPECT_TRUE(dpt::fs::exists(other));
  EXPECT_EQ(dpt::read_file(path("model.pt")), (dpt::Bytes{'o', 'k'}));
}

TEST_F(SafeFiles, StaleTemporariesOfADirectoryAreRemovedByPrefix) {
  const std::string dead = std::to_string(dead_pid());
  for (const char* name : {"checkpoint-0000000021.pt.tmp.", "checkpoint-0000000028.pt.tmp.", "notes.txt.tmp."}) {
    std::ofstream(path(name + dead)) << "partial";
  }
  EXPECT_EQ(dpt::remove_stale_temporaries(dir_, "checkpoint-"), 2);
  EXPECT_FALSE(dpt::fs::exists(path("checkpoint-0000000021.pt.tmp." + dead)));
  EXPECT_TRUE(dpt::fs::exists(path("notes.txt.tmp." + dead)));  // not the checkpoints'
}

TEST_F(SafeFiles, DirectoryLockExcludesASecondHolderUntilReleased) {
  {
    dpt::DirectoryLock first(dir_, "--checkpoint-dir");
    // flock locks belong to the open file: a second open in this process conflicts as another
    // job's would. The refusal names the holder.
    try {
      dpt::DirectoryLock second(dir_, "--checkpoint-dir", std::chrono::milliseconds(0));
      FAIL() << "two holders of one directory lock";
    } catch (const dpt::InvalidArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find("is in use by another job (pid " + std::to_string(::getpid())),
                std::string::npos)
          << e.what();
    }
  }
  dpt::DirectoryLock again(dir_, "--checkpoint-dir");  // released with the first
  EXPECT_TRUE(dpt::fs::is_regular_file(again.path()));
}

TEST(CheckedMath, RefusesToWrap) {
  EXPECT_EQ(dpt::checked_mul(1 << 20, 1 << 20, "x"), int64_t{1} << 40);
  EXPECT_THROW(dpt::checked_mul(int64_t{1} << 62, 4, "the global batch"), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::checked_add(std::numeric_limits<int64_t>::max(), 1, "steps"), dpt::InvalidArgumentError);
  EXPECT_EQ(dpt::checked_add(-5, 3, "x"), -2);
}

TEST(OneLineReason, TakesTheExceptionOutOfATorchScriptTraceback) {
  const std::string traceback =
      "The following operation failed in the TorchScript interpreter.\n"
      "Traceback of TorchScript, serialized code (most recent call last):\n"
      "  File \"code/__torch__.py\", line 8, in forward\n"
      "    _0 = uninitialized(Tensor)\n"
      "    ops.prim.RaiseException(\"this model refuses every batch\", \"builtins.ValueError\")\n"
      "    ~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE\n"
      "\n"
      "builtins.ValueError: this model refuses every batch\n";
  EXPECT_EQ(dpt::one_line_reason(traceback), "ValueError: this model refuses every batch");
  EXPECT_EQ(dpt::one_line_reason("shape mismatch\nException raised from foo at bar.cpp:3\nframe #0: ..."),
            "shape mismatch");
  EXPECT_EQ(dpt::one_line_reason("plain"), "plain");
}

// A stop request before any loop reads the flag (the data being opened) ends the process at once
// with kExitStopped; once a loop defers it, the same signal only sets the flag.
TEST(StopRequestBeforeTraining, EndsTheProcessUntilALoopDefersIt) {
  auto child_exit = [](bool deferred) {
    pid_t child = ::fork();
    if (child == 0) {
      dpt::StopRequest::install();
      dpt::StopRequest::defer(deferred);
      ::raise(SIGTERM);
      ::_exit(dpt::StopRequest::requested() ? 0 : 9);  // reached only when the signal was deferred
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(child_exit(false), dpt::kExitStopped);
  EXPECT_EQ(child_exit(true), 0);
}
