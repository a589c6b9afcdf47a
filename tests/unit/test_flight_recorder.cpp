// The flight recorder's ring, positions and the hang explanation built from them (the end-to-end
// check, a rank sleeping while the others time out, is tests/cli/test_comm_dead_peer.sh).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "liveness/flight_recorder.h"

namespace dpt::detail {
namespace {

int64_t run_one(FlightRecorder& recorder, const std::string& what) {
  const int64_t index = recorder.queued(what);
  recorder.started(index);
  recorder.finished(index, true);
  return index;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST(FlightRecorder, KeepsTheLastCollectivesInIssueOrder) {
  FlightRecorder recorder(4);
  recorder.set_owner("mpi rank 0/2");
  for (int i = 1; i <= 10; ++i) run_one(recorder, "allreduce #" + std::to_string(i));
  const std::string dump = recorder.dump();
  EXPECT_NE(dump.find("the last 4 of 10 collectives"), std::string::npos) << dump;
  EXPECT_EQ(count(dump, " completed "), 4u) << dump;
  EXPECT_EQ(dump.find("allreduce #6 "), std::string::npos) << dump;  // overwritten
  EXPECT_LT(dump.find("allreduce #7"), dump.find("allreduce #10")) << dump;
}

TEST(FlightRecorder, PositionIsTheLastCompletedAndTheOldestUnfinished) {
  FlightRecorder recorder(8);
  run_one(recorder, "broadcast #1");
  run_one(recorder, "allreduce #2");
  const int64_t third = recorder.queued("allreduce #3");
  recorder.queued("allreduce #4");
  recorder.started(third);
  const FlightPosition p = recorder.position();
  EXPECT_EQ(p.completed, 2);
  EXPECT_EQ(p.completed_what, "allreduce #2");
  EXPECT_EQ(p.in_flight, 3);
  EXPECT_EQ(p.in_flight_what, "allreduce #3");
  const FlightPosition back = FlightPosition::decode(p.encode());
  EXPECT_EQ(back.completed, 2);
  EXPECT_EQ(back.in_flight, 3);
  EXPECT_EQ(back.in_flight_what, "allreduce #3");
  EXPECT_EQ(back.completed_what, "allreduce #2");
}

TEST(FlightRecorder, ExplainsAHangBehindFirstThenSilentThenWaiting) {
  FlightPosition waiting, behind;
  waiting.completed = 2, waiting.in_flight = 3, waiting.in_flight_what = "allreduce #3", waiting.waiting_s = 3.0;
  behind.completed = 2, behind.completed_what = "allreduce #2", behind.idle_s = 3.2;
  const std::vector<std::pair<bool, FlightPosition>> positions = {
      {true, waiting}, {true, behind}, {false, {}}, {true, waiting}};
  EXPECT_EQ(explain_hang(0, positions),
            "rank 1: at allreduce #2 (completed), not in a collective for 3.2 s; rank 2: no answer (dead, or stuck "
            "inside MPI); ranks 0, 3: waiting in allreduce #3 for 3.0 s");
}

TEST(FlightRecorder, ZeroCapacityRecordsNothing) {
  setenv("DPTRAIN_FLIGHT_RECORDER", "0", 1);
  FlightRecorder recorder(FlightRecorder::capacity_from_env());
  unsetenv("DPTRAIN_FLIGHT_RECORDER");
  EXPECT_FALSE(recorder.enabled());
  EXPECT_EQ(recorder.queued("allreduce #1"), 0);
  EXPECT_EQ(FlightRecorder::capacity_from_env(), 64u);
}

}  // namespace
}  // namespace dpt::detail
