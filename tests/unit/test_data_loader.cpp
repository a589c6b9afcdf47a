// DataLoader: identical batches for any worker count (random transforms included), the W*B
// equivalence end to end, resume, errors naming the sample, cancellation, transforms.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dptrain/core/data/data_loader.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/data/transforms.h"

namespace {

using namespace std::chrono_literals;

std::shared_ptr<dpt::TensorDataset> images(int64_t n) {
  torch::manual_seed(0);
  return std::make_shared<dpt::TensorDataset>(torch::rand({n, 1, 8, 8}), torch::arange(n));
}

dpt::Transform augment() {
  return dpt::compose({dpt::RandomCrop(8, 2), dpt::RandomHorizontalFlip(0.5), dpt::Normalize({0.5}, {0.25})});
}

std::vector<dpt::Batch> run_epoch(dpt::DataLoader& loader, int64_t epoch) {
  std::vector<dpt::Batch> out;
  for (dpt::Batch& batch : loader.epoch(epoch)) out.push_back(batch);
  return out;
}

void expect_same_batches(const std::vector<dpt::Batch>& a, const std::vector<dpt::Batch>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].indices, b[k].indices) << what << " batch " << k;
    EXPECT_TRUE(torch::equal(a[k].inputs, b[k].inputs)) << what << " batch " << k;
    EXPECT_TRUE(torch::equal(a[k].targets, b[k].targets)) << what << " batch " << k;
  }
}

// A dataset whose example `bad` cannot be read.
class BrokenDataset : public dpt::TensorDataset {
 public:
  BrokenDataset(int64_t n, int64_t bad) : TensorDataset(torch::zeros({n, 2}), torch::zeros({n})), bad_(bad) {}
  dpt::Example get(int64_t index) const override {
    if (index == bad_) throw std::runtime_error("checksum mismatch");
    return TensorDataset::get(index);
  }

 private:
  int64_t bad_;
};

}  // namespace

TEST(DataLoader, BatchesAreIdenticalFor0To4WorkersWithRandomTransforms) {
  auto data = images(45);
  std::vector<dpt::Batch> reference;
  for (int workers : {0, 1, 2, 4}) {
    dpt::DataLoader loader(data, dpt::DistributedSampler(45, 0, 1, true, 11),
                           dpt::DataLoaderOptions().batch_size(4).workers(workers).seed(5), augment());
    EXPECT_EQ(loader.steps_per_epoch(), 12);
    auto batches = run_epoch(loader, 3);
    ASSERT_EQ(batches.size(), 12u);
    EXPECT_EQ(batches.back().size(), 1);
    if (workers == 0) {
      reference = batches;
    } else {
      expect_same_batches(batches, reference, "workers=" + std::to_string(workers));
    }
  }
  // The transforms did something, and differently in another epoch.
  dpt::DataLoader plain(data, dpt::DistributedSampler(45, 0, 1, true, 11), dpt::DataLoaderOptions().batch_size(4));
  auto untransformed = run_epoch(plain, 3);
  EXPECT_FALSE(torch::allclose(untransformed[0].inputs, reference[0].inputs));
  dpt::DataLoader again(data, dpt::DistributedSampler(45, 0, 1, false, 11),
                        dpt::DataLoaderOptions().batch_size(45).workers(2).seed(5), augment());
  auto epoch3 = run_epoch(again, 3)[0].inputs;
  auto epoch4 = run_epoch(again, 4)[0].inputs;
  EXPECT_FALSE(torch::equal(epoch3, epoch4));
}

TEST(DataLoader, WRanksSeeTheSamplesAndAugmentationsOfOneProcessWithBatchWB) {
  const int64_t n = 48, batch = 2;
  auto data = images(n);
  for (int world : {2, 3, 4}) {
    dpt::DataLoader single(data, dpt::DistributedSampler(n, 0, 1, true, 3),
                           dpt::DataLoaderOptions().batch_size(batch * world).seed(1), augment());
    auto global = run_epoch(single, 1);
    std::vector<std::vector<dpt::Batch>> ranks;
    for (int r = 0; r < world; ++r) {
      dpt::DataLoader loader(data, dpt::DistributedSampler(n, r, world, true, 3),
                             dpt::DataLoaderOptions().batch_size(batch).workers(r % 3).seed(1), augment());
      ranks.push_back(run_epoch(loader, 1));
      ASSERT_EQ(ranks.back().size(), global.size()) << "W=" << world;
    }
    for (size_t k = 0; k < global.size(); ++k) {
      std::vector<int64_t> concatenated;
      std::vector<torch::Tensor> rows;
      for (const auto& rank : ranks) {
        concatenated.insert(concatenated.end(), rank[k].indices.begin(), rank[k].indices.end());
        rows.push_back(rank[k].inputs);
      }
      // Same samples; and each sample got the very augmentation the single process gave it.
      auto by_index = [](std::vector<int64_t> idx, torch::Tensor x) {
        auto order = torch::argsort(torch::tensor(idx));
        return x.index_select(0, order);
      };
      std::vector<int64_t> expected = global[k].indices;
      auto a = by_index(concatenated, torch::cat(rows));
      auto b = by_index(expected, global[k].inputs);
      std::sort(concatenated.begin(), concatenated.end());
      std::sort(expected.begin(), expected.end());
      EXPECT_EQ(concatenated, expected) << "W=" << world << " step " << k;
      EXPECT_TRUE(torch::equal(a, b)) << "W=" << world << " step " << k;
    }
  }
}

TEST(DataLoader, StateAndLoadStateResumeMidEpoch) {
  auto data = images(30);
  auto options = dpt::DataLoaderOptions().batch_size(4).workers(2).seed(2);
  dpt::DataLoader full(data, dpt::DistributedSampler(30, 0, 1, true, 4), options, augment());
  auto all = run_epoch(full, 2);
  EXPECT_EQ(full.state().epoch, 3);  // a finished epoch resumes at the next one
  EXPECT_EQ(full.state().position, 0);

  dpt::DataLoader first(data, dpt::DistributedSampler(30, 0, 1, true, 4), options, augment());
  dpt::SamplerState saved;
  {
    auto batches = first.epoch(2);
    auto it = batches.begin();  // batch 0
    ++it;
    ++it;  // batches 0, 1 and 2 handed out (and trained on): a checkpoint now
    ASSERT_NE(it, batches.end());
    saved = first.state();
  }  // leaving the loop early cancels the workers
  EXPECT_EQ(saved.epoch, 2);
  EXPECT_EQ(saved.position, 12);
  dpt::DataLoader resumed(data, dpt::DistributedSampler(30, 0, 1, true, 4), options, augment());
  resumed.load_state(saved);
  auto rest = run_epoch(resumed, saved.epoch);
  ASSERT_EQ(rest.size(), all.size() - 3);
  // Batch boundaries restart at the resume point; with 12 = 3 * 4 they line up with the full run.
  expect_same_batches(rest, std::vector<dpt::Batch>(all.begin() + 3, all.end()), "resumed");
}

TEST(DataLoader, AFailingSampleIsNamedInTheError) {
  for (int workers : {0, 3}) {
    auto data = std::make_shared<BrokenDataset>(20, 13);
    dpt::DataLoader loader(data, dpt::DistributedSampler(20, 0, 1, false),
                           dpt::DataLoaderOptions().batch_size(4).workers(workers));
    int64_t seen = 0;
    try {
      for (auto& batch : loader.epoch(0)) seen += batch.size();
      FAIL() << "no error";
    } catch (const dpt::PreprocessError& e) {
      EXPECT_EQ(e.index(), 13);
      EXPECT_NE(std::string(e.what()).find("sample 13"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
    }
    EXPECT_EQ(seen, 12);  // the batches before the failing one arrived
  }
}

TEST(DataLoader, DestroyingTheLoaderMidEpochWithAFullQueueDoesNotDeadlock) {
  auto data = images(400);
  auto loader =
      std::make_unique<dpt::DataLoader>(data, dpt::DistributedSampler(400, 0, 1),
                                        dpt::DataLoaderOptions().batch_size(2).workers(3).queue_depth(2), augment());
  auto batches = std::make_unique<dpt::EpochBatches>(loader->epoch(0));
  auto it = batches->begin();
  ASSERT_NE(it, batches->end());
  std::this_thread::sleep_for(50ms);  // workers fill the queue and wait
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  std::thread([loader = std::move(loader), done]() mutable {
    loader.reset();
    done->set_value();
  }).detach();
  if (finished.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "~DataLoader deadlocked";
    std::fflush(nullptr);
    std::_Exit(1);
  }
  EXPECT_THROW(++it, dpt::InvalidArgumentError);  // the pass says its loader is gone
}

TEST(DataLoader, DropLastAndStepsPerEpoch) {
  auto data = images(10);
  dpt::DataLoader loader(data, dpt::DistributedSampler(10, 1, 3, false),
                         dpt::DataLoaderOptions().batch_size(3).drop_last(true));
  EXPECT_EQ(loader.steps_per_epoch(), 1);  // 4 samples per rank (padded), one full batch of 3
  auto batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].indices, (std::vector<int64_t>{1, 4, 7}));
  EXPECT_THROW(dpt::DataLoader(data, dpt::DistributedSampler(11, 0, 1)), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::DataLoader(data, dpt::DistributedSampler(10, 0, 1), dpt::DataLoaderOptions().batch_size(0)),
               dpt::InvalidArgumentError);
}

TEST(DataTransforms, NormalizeCropAndFlipMatchTheirDefinitions) {
  torch::manual_seed(3);
  const dpt::Example example{torch::rand({2, 5, 6}), torch::tensor(1)};
  dpt::SampleRng rng(1, 2, 3);
  auto normalized = dpt::Normalize({0.1, 0.2}, {0.5, 2.0})(example, rng).input.tensor();
  EXPECT_TRUE(torch::allclose(normalized[0], (example.input.tensor()[0] - 0.1) / 0.5));
  EXPECT_TRUE(torch::allclose(normalized[1], (example.input.tensor()[1] - 0.2) / 2.0));

  auto flipped = dpt::RandomHorizontalFlip(1.0)(example, rng).input.tensor();
  EXPECT_TRUE(torch::equal(flipped, example.input.tensor().flip({2})));
  EXPECT_TRUE(torch::equal(dpt::RandomHorizontalFlip(0.0)(example, rng).input.tensor(), example.input.tensor()));

  // A crop is some window of the zero-padded input.
  auto cropped = dpt::RandomCrop(4, 1)(example, rng).input.tensor();
  ASSERT_EQ(cropped.sizes(), torch::IntArrayRef({2, 4, 4}));
  auto padded = torch::constant_pad_nd(example.input.tensor(), {1, 1, 1, 1}, 0);
  bool found = false;
  for (int64_t top = 0; top + 4 <= padded.size(1); ++top)
    for (int64_t left = 0; left + 4 <= padded.size(2); ++left)
      found = found || torch::equal(padded.slice(1, top, top + 4).slice(2, left, left + 4), cropped);
  EXPECT_TRUE(found);
  EXPECT_THROW(dpt::RandomCrop(9, 1)(example, rng), dpt::InvalidArgumentError);
  EXPECT_THROW(dpt::Normalize({0.1, 0.2, 0.3}, {1, 1, 1})(example, rng), dpt::InvalidArgumentError);
  // The same (seed, epoch, index) draws the same numbers.
  dpt::SampleRng a(9, 1, 4), b(9, 1, 4), c(9, 1, 5);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(dpt::SampleRng(9, 1, 4).next_u64(), c.next_u64());
}

TEST(DataLoader, DoesNotPinForACpuTargetOrWithoutCuda) {
  auto data = images(8);
  dpt::DataLoader cpu(data, dpt::DistributedSampler(8, 0, 1), dpt::DataLoaderOptions().batch_size(4));
  EXPECT_FALSE(cpu.pins_memory());
  for (auto& batch : cpu.epoch(0)) EXPECT_FALSE(batch.inputs.tensor().is_pinned());
  dpt::DataLoader cuda(data, dpt::DistributedSampler(8, 0, 1), dpt::DataLoaderOptions().device(torch::kCUDA));
  EXPECT_EQ(cuda.pins_memory(), torch::cuda::is_available());
  if (!torch::cuda::is_available()) {
    EXPECT_THROW(dpt::DataLoader(data, dpt::DistributedSampler(8, 0, 1),
                                 dpt::DataLoaderOptions().pin_memory(dpt::PinMemory::On)),
                 dpt::UnsupportedError);
  }
}

TEST(DataLoader, PinsMemoryWhenTheTargetIsCuda_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto data = images(8);
  dpt::DataLoader loader(data, dpt::DistributedSampler(8, 0, 1),
                         dpt::DataLoaderOptions().batch_size(4).workers(2).device(torch::kCUDA));
  EXPECT_TRUE(loader.pins_memory());
  for (auto& batch : loader.epoch(0)) {
    EXPECT_TRUE(batch.inputs.tensor().is_pinned());
    EXPECT_TRUE(batch.targets.tensor().is_pinned());
    auto on_gpu = batch.inputs.tensor().to(torch::kCUDA, /*non_blocking=*/true);
    EXPECT_TRUE(torch::equal(on_gpu.cpu(), batch.inputs));
  }
}
