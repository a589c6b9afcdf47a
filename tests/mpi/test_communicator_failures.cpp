// Failure drills, run only by tests/cli/test_comm_dead_peer.sh (they end the process on purpose):
//   DPTRAIN_TEST_DRILL=kill  rank 1 SIGKILLs itself while the others sit in an allreduce;
//                            mpirun must take the job down with a non-zero exit.
//   DPTRAIN_TEST_DRILL=segv  rank 1 crashes (SIGSEGV): its flight recorder must reach stderr.
//   DPTRAIN_TEST_DRILL=hang  rank 1 never calls the collective; the others hit the 3 s timeout,
//                            get a TimeoutError naming it, and the fatal hook aborts the job.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "dptrain/core/error.h"
#include "dptrain/core/run_main.h"
#include "test_support.h"

namespace dpt::testing {
namespace {

TEST(CommFailureDrill, DeadOrHangingPeer) {
  const char* drill = std::getenv("DPTRAIN_TEST_DRILL");
  if (drill == nullptr) GTEST_SKIP() << "run by tests/cli/test_comm_dead_peer.sh only";
  auto comm = world();
  if (comm->size() < 2) GTEST_SKIP() << "needs 2 ranks";
  comm->set_timeout(std::chrono::seconds(3));
  auto t = torch::ones({1000});
  comm->allreduce(t);  // everyone is up
  if (comm->rank() == 1) {
    if (std::string(drill) == "kill") std::raise(SIGKILL);
    if (std::string(drill) == "segv") std::raise(SIGSEGV);
    std::this_thread::sleep_for(std::chrono::seconds(120));  // "hang": never joins
    std::_Exit(0);
  }
  // What a dptrain program does: run_main prints the error and calls the fatal hook.
  int code = dpt::run_main("drill", [&] {
    for (int i = 0; i < 1000000; ++i) comm->allreduce(t);
    return 0;
  });
  std::_Exit(code);
}

}  // namespace
}  // namespace dpt::testing
