// gtest main shared by every test binary. For multi-rank binaries (run under mpirun) it sets up the
// world communicator once (dpt::testing::world()), and only rank 0 prints gtest's progress so the
// log stays readable; the other ranks print only their failures, tagged with the rank. The ranks
// agree on the outcome at the end, so any rank's failure fails every rank's exit code, and so the
// CTest test.
#include <gtest/gtest.h>

#include "test_support.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return dpt::testing::run_all_tests();
}
