// The slow rank, named (trainers/src/loop/straggler_monitor.h): the Trainer at world size W with
// the last rank's data loading slowed on purpose (a sleep per sample) must name that rank in its
// metrics as a straggler; with every rank slowed alike, none is named.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <thread>

#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/trainers/loop/trainer.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "test_support.h"

namespace {

// Every sample costs `delay` to load on the ranks chosen.
class SleepyDataset : public dpt::Dataset {
 public:
  SleepyDataset(dpt::TensorDataset data, std::chrono::microseconds delay) : data_(std::move(data)), delay_(delay) {}
  int64_t size() const override { return data_.size(); }
  dpt::Example get(int64_t index) const override {
    std::this_thread::sleep_for(delay_);
    return data_.get(index);
  }

 private:
  dpt::TensorDataset data_;
  std::chrono::microseconds delay_;
};

dpt::TensorDataset synthetic(int64_t n) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
  return dpt::TensorDataset(torch::rand({n, 1, 4, 4}, generator), torch::randint(3, {n}, generator, torch::kLong));
}

// Trains one epoch of `steps` steps, logging every 3; returns rank 0's "ranks" metrics records.
std::vector<nlohmann::json> rank_records(std::chrono::microseconds delay_on_this_rank, int64_t steps = 24) {
  auto world = dpt::testing::world();
  dpt::testing::TempDir dir("dpt-straggler");
  const int64_t batch = 4;
  SleepyDataset data(synthetic(steps * batch * world->size()), delay_on_this_rank);
  torch::manual_seed(3);
  dpt::Model model(dpt::make_mlp(16, {12}, 3));
  dpt::Trainer trainer(model, world,
                       dpt::TrainerOptions()
                           .epochs(1)
                           .batch_size(batch)
                           .optimizer(dpt::OptimizerOptions().name("sgd").lr(0.1))
                           .log_every_steps(3)
                           .progress_bar(false)
                           .metrics_file(dir.file("metrics.jsonl")));
  trainer.fit(data);
  std::vector<nlohmann::json> records;
  if (world->rank() == 0) {
    std::ifstream in(dir.file("metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto record = nlohmann::json::parse(line);
      if (record["type"] == "ranks") records.push_back(record);
    }
  }
  return records;
}

TEST(Stragglers, ARankWithSlowDataLoadingIsNamed) {
  auto world = dpt::testing::world();
  if (world->size() < 2) GTEST_SKIP() << "needs 2+ ranks";
  const int slow = world->size() - 1;
  // 4 samples a step at 3 ms each: ~12 ms of loading against well under 1 ms of compute.
  const auto delay = std::chrono::microseconds(world->rank() == slow ? 3000 : 0);
  const auto records = rank_records(delay);
  if (world->rank() != 0) return;
  // Log steps 1, 3, 6, ..., 24, and the end: one record per interval, the steps all covered.
  ASSERT_EQ(records.size(), 9u);
  EXPECT_EQ(records.front()["first_step"], 1);
  EXPECT_EQ(records.back()["step"], 24);
  for (size_t i = 1; i < records.size(); ++i) {
    EXPECT_EQ(records[i]["first_step"].get<int64_t>(), records[i - 1]["step"].get<int64_t>() + 1);
  }
  for (size_t i = 1; i < records.size(); ++i) {  // step 1 alone also holds the other ranks' warm-up
    const auto& record = records[i];
    EXPECT_EQ(record["busy_ms"].size(), static_cast<size_t>(world->size()));
    EXPECT_EQ(record["slowest_rank"], slow) << record.dump();
    EXPECT_GT(record["slowdown"].get<double>(), 2.0) << record.dump();
    // The sleeps alone are 12 ms a step on the slow rank.
    EXPECT_GE(record["busy_ms"][slow].get<double>(), 12.0) << record.dump();
  }
  // Named once it has been the slowest for 3 intervals in a row (the 3rd, or the 4th when step 1
  // did not count), and from then on.
  EXPECT_FALSE(records[1]["straggler"].get<bool>());
  for (size_t i = 3; i < records.size(); ++i) EXPECT_TRUE(records[i]["straggler"].get<bool>()) << records[i].dump();
}

// A run that ends between log steps: the interval gathered at the last log step and the steps
// after it are both reported at the end.
TEST(Stragglers, EveryIntervalIsReportedWhenTheRunEndsBetweenLogSteps) {
  auto world = dpt::testing::world();
  if (world->size() < 2) GTEST_SKIP() << "needs 2+ ranks";
  const auto records = rank_records(std::chrono::microseconds(0), /*steps=*/22);
  if (world->rank() != 0) return;
  // Log steps 1, 3, ..., 21, then the end at 22.
  ASSERT_EQ(records.size(), 9u);
  EXPECT_EQ(records.front()["first_step"], 1);
  EXPECT_EQ(records[7]["first_step"], 19);
  EXPECT_EQ(records[7]["step"], 21);
  EXPECT_EQ(records[8]["first_step"], 22);
  EXPECT_EQ(records[8]["step"], 22);
}

TEST(Stragglers, RanksSlowedAlikeNameNoOne) {
  auto world = dpt::testing::world();
  if (world->size() < 2) GTEST_SKIP() << "needs 2+ ranks";
  // The same sleep everywhere dominates the step, so the busy times agree to well within 1.2x
  // even with the ranks oversubscribing the cores.
  const auto records = rank_records(std::chrono::microseconds(3000));
  if (world->rank() != 0) return;
  ASSERT_FALSE(records.empty());
  for (const auto& record : records) EXPECT_FALSE(record["straggler"].get<bool>()) << record.dump();
}

}  // namespace
