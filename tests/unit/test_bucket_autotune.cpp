// DdpOptions::bucket_cap_auto's decision (bucket_autotune.h), by hand-worked cases: the cost
// curve's interpolation, the replay of a backward's reductions, and which cap wins when the
// all-reduce is latency-bound (one bucket) or bandwidth-bound (small buckets that overlap).
#include <gtest/gtest.h>

#include "dptrain/parallel/ddp/bucket_autotune.h"

namespace dpt {
namespace {

TEST(AllreduceCurve, InterpolatesBetweenAndExtrapolatesBeyondThePoints) {
  AllreduceCurve curve({{2000, 3.0}, {1000, 1.0}});  // any order
  EXPECT_DOUBLE_EQ(curve.seconds(1500), 2.0);
  EXPECT_DOUBLE_EQ(curve.seconds(2000), 3.0);
  EXPECT_DOUBLE_EQ(curve.seconds(10), 1.0);    // below the smallest: its fixed cost
  EXPECT_DOUBLE_EQ(curve.seconds(3000), 5.0);  // beyond: the last slope
}

// Three gradients of 100 bytes ready at 1, 2 and 3 s; an all-reduce costs 0.5 s + 5 ms per byte.
class Replay : public ::testing::Test {
 protected:
  AllreduceCurve curve{{{100, 1.0}, {300, 2.0}}};
  std::vector<double> ready{1, 2, 3};
  std::vector<size_t> bytes{100, 100, 100};
};

TEST_F(Replay, BucketsOverlapWithTheBackward) {
  // Each alone: [1, 2], [2, 3], [3, 4].
  EXPECT_DOUBLE_EQ(simulate_reduction({{0}, {1}, {2}}, ready, bytes, curve), 4.0);
  // One bucket waits for the last gradient: 3 + 2.
  EXPECT_DOUBLE_EQ(simulate_reduction({{0, 1, 2}}, ready, bytes, curve), 5.0);
}

TEST_F(Replay, BucketsLaunchInOrderAndShareTheWire) {
  // The bucket of gradient 2 goes first (bucket order), so gradient 0's waits for it to launch at
  // 3 and for the wire: [3, 4], then [4, 5].
  EXPECT_DOUBLE_EQ(simulate_reduction({{2}, {0}}, ready, bytes, curve), 5.0);
  // A slow wire: the second bucket queues behind the first.
  AllreduceCurve slow{{{100, 4.0}, {200, 8.0}}};
  EXPECT_DOUBLE_EQ(simulate_reduction({{0}, {1}}, ready, bytes, slow), 1 + 4 + 4);
}

// Eight 1 MiB gradients, ready every 10 ms in registration order.
struct EightLayers {
  std::vector<torch::Tensor> params;
  std::vector<size_t> order;
  std::vector<double> ready;
  EightLayers() {
    for (size_t i = 0; i < 8; ++i) {
      params.push_back(torch::empty({262144}));
      order.push_back(i);
      ready.push_back(0.010 * static_cast<double>(i + 1));
    }
  }
};

// The fewest buckets: the 1 MiB first bucket (kept: first_bucket_cap_mb is not tuned) and one more.
TEST(ChooseBucketCap, ALatencyBoundWireGetsTheFewestBuckets) {
  EightLayers model;
  const AllreduceCurve curve({{16384, 0.050}, {8 << 20, 0.0501}});  // 50 ms a collective, bytes nearly free
  const auto choice = choose_bucket_cap(model.params, model.order, model.ready, 1u << 20, curve);
  EXPECT_GE(choice.cap_bytes, 8u << 20) << choice.summary();
  EXPECT_DOUBLE_EQ(choice.backward_s, 0.080);
  ASSERT_FALSE(choice.trials.empty());
  for (const auto& trial : choice.trials) {
    if (trial.cap_bytes == choice.cap_bytes) {
      EXPECT_EQ(trial.buckets, 2u);
    }
  }
}

// 10 ms per MiB, as fast as backward makes them: one bucket per gradient (caps 0.25-1 MB) ends
// 10 ms after the backward, at 90 ms; 2 MB pairs them ([10, 20], [30, 50], [50, 70], [70, 90],
// [90, 100]): 100 ms; 25 MB waits for all but the first (80 + 70 = 150 ms). The three tied caps
// go to the largest, 1 MB.
TEST(ChooseBucketCap, ABandwidthBoundWireGetsBucketsThatOverlap) {
  EightLayers model;
  const AllreduceCurve curve({{16384, 0.0}, {1 << 20, 0.010}, {8 << 20, 0.080}});
  const auto choice = choose_bucket_cap(model.params, model.order, model.ready, 1u << 20, curve);
  EXPECT_EQ(choice.cap_bytes, 1u << 20) << choice.summary();
  // Every candidate was tried, the 25 MB default among them, and the winner beats it.
  bool has_default = false;
  double chosen_end = 0, default_end = 0;
  for (const auto& trial : choice.trials) {
    if (trial.cap_bytes == 25u << 20) {
      has_default = true;
      default_end = trial.end_s;
    }
    if (trial.cap_bytes == choice.cap_bytes) chosen_end = trial.end_s;
  }
  ASSERT_TRUE(has_default) << choice.summary();
  EXPECT_LT(chosen_end, default_end) << choice.summary();
  EXPECT_NE(choice.summary().find("<-"), std::string::npos);
}

// A wire that costs nothing: every cap ties, and the 25 MB default wins the tie.
TEST(ChooseBucketCap, ATieGoesToTheDefault) {
  EightLayers model;
  const AllreduceCurve free_wire({{16384, 0.0}, {1 << 20, 0.0}});
  const auto choice = choose_bucket_cap(model.params, model.order, model.ready, 1u << 20, free_wire);
  EXPECT_EQ(choice.cap_bytes, 25u << 20) << choice.summary();
}

}  // namespace
}  // namespace dpt
