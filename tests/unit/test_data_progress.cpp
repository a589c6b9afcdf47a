// ProgressReporter: the line format, the bar on a stream, silence off rank 0, Auto on a non-terminal.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "dptrain/core/data/progress.h"

namespace {

std::string read_all(std::FILE* file) {
  std::rewind(file);
  std::string out;
  char buffer[256];
  size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) out.append(buffer, got);
  return out;
}

}  // namespace

TEST(DataProgress, LineShowsStepsRateEtaAndPostfix) {
  const std::string line = dpt::format_progress("epoch 2", 30, 120, 2500.0, 75.0, "loss 0.5000", 10);
  EXPECT_EQ(line, "epoch 2 [==>       ]  30/120  2500.0 samples/s  ETA 1:15  loss 0.5000");
  EXPECT_EQ(dpt::format_progress("e", 0, 10, 0.0, 4000.0, "", 0), "e  0/10  0.0 samples/s  ETA 1:06:40");
}

TEST(DataProgress, BarIsDrawnOnTheStreamAndCompleted) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  {
    dpt::ProgressReporter progress(3, dpt::ProgressOptions().mode(dpt::ProgressMode::Bar).stream(file).label("ep"));
    EXPECT_EQ(progress.mode(), dpt::ProgressMode::Bar);
    for (int i = 0; i < 3; ++i) progress.update(64, "loss 1.0");
    progress.finish("loss 0.9");
    EXPECT_EQ(progress.steps(), 3);
  }
  const std::string text = read_all(file);
  std::fclose(file);
  EXPECT_NE(text.find("ep [==============================]  3/3"), std::string::npos) << text;
  EXPECT_NE(text.find("samples/s"), std::string::npos) << text;
  EXPECT_NE(text.find("loss 0.9\x1b[K\n"), std::string::npos) << text;
}

TEST(DataProgress, OnlyRankZeroReportsAndAutoPicksLogOffATerminal) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  {
    dpt::ProgressReporter other(2, dpt::ProgressOptions().rank(1).mode(dpt::ProgressMode::Bar).stream(file));
    EXPECT_EQ(other.mode(), dpt::ProgressMode::Off);
    other.update(10);
    other.finish();
    dpt::ProgressReporter automatic(2, dpt::ProgressOptions().stream(file));
    EXPECT_EQ(automatic.mode(), dpt::ProgressMode::Log);  // a file is not a terminal
  }
  EXPECT_EQ(read_all(file), "");
  std::fclose(file);
}
