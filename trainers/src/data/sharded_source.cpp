#include "dptrain/trainers/data/sharded_source.h"

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <numeric>

#include "dptrain/core/data/sample_rng.h"
#include "dptrain/core/data/tensor_files.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/serialize.h"
#include "dptrain/trainers/loop/trainer.h"

namespace dpt {
namespace {

// "float32 [1, 28, 28] -> int64 []": dtypes and shapes of one sample, every part.
std::string sample_layout(const TensorDataset& data) {
  std::string text;
  auto describe = [&text](const Tensors& tensors) {
    for (const auto& part : tensors.parts()) {
      auto sizes = part.sizes().vec();
      sizes.erase(sizes.begin());
      text += std::string(text.empty() || text.back() == ' ' ? "" : ", ") + c10::toString(part.scalar_type()) + " " +
              c10::str(c10::IntArrayRef(sizes));
    }
  };
  describe(data.inputs());
  text += " -> ";
  describe(data.targets());
  return text;
}

torch::Tensor permutation(int64_t n, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
}

}  // namespace

ShardedSource::ShardedSource(std::vector<ShardInfo> shards, SourceOptions options, size_t cache_shards)
    : shards_(std::move(shards)), options_(std::move(options)), cache_shards_(std::max<size_t>(cache_shards, 1)) {
  DPT_CHECK(!shards_.empty(), DataError, "no training shards");
  for (const auto& shard : shards_) {
    DPT_CHECK(shard.samples > 0, DataError, shard.path, ": an empty shard");
    first_sample_.push_back(total_);
    total_ += shard.samples;
  }
}

std::string ShardedSource::describe() const {
  return std::to_string(shards_.size()) + " shards, " + std::to_string(total_) + " samples";
}

std::shared_ptr<const TensorDataset> ShardedSource::load(size_t shard) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->first != shard) continue;
    cache_.splice(cache_.begin(), cache_, it);
    return cache_.front().second;
  }
  // Loaded under the lock: the stream reads its shards one after another anyway, and two workers
  // must not hold two copies of one shard.
  auto data = std::make_shared<const TensorDataset>(load_tensor_file(shards_[shard].path));
  DPT_CHECK(data->size() == shards_[shard].samples, DataError, shards_[shard].path, ": holds ", data->size(),
            " samples, but the shard index says ", shards_[shard].samples, " (a stale shards.json?)");
  const std::string layout = sample_layout(*data);
  if (sample_layout_.empty()) {
    sample_layout_ = layout, sample_layout_origin_ = shards_[shard].path;
  }
  DPT_CHECK(layout == sample_layout_, DataError, shards_[shard].path, ": samples of ", layout, ", but ",
            sample_layout_origin_, "'s are ", sample_layout_, " (every shard must hold samples of one shape)");
  cache_.emplace_front(shard, data);
  while (cache_.size() > cache_shards_) cache_.pop_back();
  return data;
}

TrainBatch ShardedSource::first_samples(int64_t n) const {
  auto data = load(0);
  return gather_examples(*data, torch::arange(std::min<int64_t>(n, data->size()), torch::kLong));
}

std::vector<size_t> ShardedSource::shards_of(int64_t epoch, const RankLayout& layout) const {
  const auto n = static_cast<int64_t>(shards_.size());
  auto order = options_.shuffle ? permutation(n, static_cast<uint64_t>(options_.seed + epoch))
                                : torch::arange(n, torch::kLong);
  std::vector<size_t> mine;
  for (int64_t i = layout.rank; i < n; i += layout.world) mine.push_back(static_cast<size_t>(order[i].item<int64_t>()));
  return mine;
}

torch::Tensor ShardedSource::order_in_shard(int64_t epoch, size_t shard) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = orders_.begin(); it != orders_.end(); ++it) {
    if (it->epoch != epoch || it->shard != shard) continue;
    orders_.splice(orders_.begin(), orders_, it);
    return orders_.front().order;
  }
  // Seeded per (seed, epoch, shard): any worker computes the same order.
  auto order = permutation(shards_[shard].samples, sample_seed(static_cast<uint64_t>(options_.seed), epoch,
                                                               static_cast<int64_t>(shard)));
  orders_.push_front({epoch, shard, order});
  while (orders_.size() > cache_shards_) orders_.pop_back();
  return order;
}

int64_t ShardedSource::sample_in_shard(int64_t epoch, size_t shard, int64_t j) const {
  if (!options_.shuffle) return j;
  return order_in_shard(epoch, shard)[j].item<int64_t>();
}

int64_t ShardedSource::samples_of(int64_t epoch, const RankLayout& layout) const {
  int64_t count = 0;
  for (size_t shard : shards_of(epoch, layout)) count += shards_[shard].samples;
  return count;
}

int64_t ShardedSource::steps_in_epoch(int64_t epoch, int64_t /*offset*/, const RankLayout& layout) const {
  // The rank with the fewest samples ends the epoch for everyone (no rank waits for a batch that
  // never comes).
  int64_t fewest = -1;
  for (int r = 0; r < layout.world; ++r) {
    RankLayout other = layout;
    other.rank = r;
    const int64_t samples = samples_of(epoch, other);
    fewest = fewest < 0 ? samples : std::min(fewest, samples);
  }
  return std::max<int64_t>(0, fewest) / (layout.batch * layout.accumulation);
}

TrainBatch ShardedSource::micro_batch(int64_t epoch, int64_t /*offset*/, int64_t k, const RankLayout& layout) const {
  // Positions [k * B, (k + 1) * B) of this rank's stream: its shards in order, each permuted.
  const auto mine = shards_of(epoch, layout);
  int64_t position = k * layout.batch;
  const int64_t end = position + layout.batch;
  std::vector<Tensors> inputs, targets;
  int64_t stream_start = 0;
  for (size_t shard : mine) {
    const int64_t count = shards_[shard].samples;
    if (position >= stream_start + count) {
      stream_start += count;
      continue;
    }
    auto data = load(shard);
    const int64_t from = position - stream_start;
    const int64_t to = std::min(end, stream_start + count) - stream_start;
    auto indices = options_.shuffle ? order_in_shard(epoch, shard).slice(0, from, to)
                                    : torch::arange(from, to, torch::kLong);
    position = stream_start + to;
    TrainBatch part;
    if (!options_.transform) {
      part = gather_examples(*data, indices);
    } else {
      const int64_t first = first_sample_[shard];
      part = gather_examples(*data, indices, [&](Example example, int64_t index) {
        SampleRng rng(static_cast<uint64_t>(options_.seed), epoch, first + index);  // global sample id
        return options_.transform(std::move(example), rng);
      });
    }
    inputs.push_back(part.first);
    targets.push_back(part.second);
    if (position >= end) break;
    stream_start += count;
  }
  DPT_ASSERT(position == end, "micro-batch ", k, " of epoch ", epoch, " runs past rank ", layout.rank, "'s shards");
  TrainBatch batch{Tensors::cat(inputs), Tensors::cat(targets)};
  return options_.pin_memory ? pinned(batch) : batch;
}

std::vector<ShardInfo> find_shards(const std::string& directory, const std::string& split,
                                   const CommunicatorPtr& world) {
  const auto paths = list_shards(directory, split);
  if (paths.empty()) return {};
  std::vector<ShardInfo> shards;
  for (const auto& path : paths) shards.push_back({path, 0});
  const std::string index_path = directory + "/shards.json";
  if (fs::is_regular_file(index_path)) {
    auto text = read_file(index_path);
    auto index = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    DPT_CHECK(index.is_object(), DataError, index_path, ": not a JSON object");
    if (index.contains(split)) {
      const auto& counts = index.at(split);
      DPT_CHECK(counts.is_array() && counts.size() == shards.size(), DataError, index_path, ": \"", split,
                "\" must list the sample count of each of the ", shards.size(), " ", split, "-*.pt shards");
      for (size_t i = 0; i < shards.size(); ++i) {
        DPT_CHECK(counts[i].is_number_integer() && counts[i].get<int64_t>() > 0, DataError, index_path, ": \"", split,
                  "\"[", i, "] is not a positive sample count");
        shards[i].samples = counts[i].get<int64_t>();
      }
      return shards;
    }
  }
  // No index: rank 0 counts (reading every shard once), the others receive the counts.
  Bytes counts = bytes_from_rank0(world, [&] {
    DPT_LOG_INFO("{}: no \"{}\" entry in shards.json; counting the samples of {} shard(s) on rank 0", directory,
                 split, shards.size());
    std::vector<int64_t> sizes;
    for (const auto& shard : shards) sizes.push_back(load_tensor_file(shard.path).size());
    return serialize_tensor(torch::tensor(sizes, torch::kLong));
  });
  auto sizes = deserialize_tensor(counts);
  for (size_t i = 0; i < shards.size(); ++i) shards[i].samples = sizes[static_cast<int64_t>(i)].item<int64_t>();
  return shards;
}

}  // namespace dpt
