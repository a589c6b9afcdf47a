#include <gtest/gtest.h>

#include "dptrain/core/error.h"
#include "dptrain/core/run_main.h"

TEST(Error, CheckBuildsMessageFromValues) {
  try {
    int batch = 0;
    DPT_CHECK(batch > 0, InvalidArgumentError, "--batch-size must be > 0, got ", batch);
    FAIL() << "DPT_CHECK did not throw";
  } catch (const dpt::InvalidArgumentError& e) {
    EXPECT_STREQ(e.what(), "--batch-size must be > 0, got 0");
    EXPECT_EQ(e.kind(), dpt::ErrorKind::InvalidArgument);
  }
}

TEST(Error, RunMainTurnsExceptionsIntoExitCodes) {
  EXPECT_EQ(dpt::run_main("t", [] { return 0; }), 0);
  EXPECT_EQ(dpt::run_main("t", []() -> int { DPT_THROW(InvalidArgumentError, "bad"); }), dpt::kExitUsage);
  EXPECT_EQ(dpt::run_main("t", []() -> int { DPT_THROW(IoError, "gone"); }), dpt::kExitError);
  EXPECT_EQ(dpt::run_main("t", []() -> int { throw std::runtime_error("x"); }), dpt::kExitError);
}
