// Tensor-file shards streamed with bounded memory (see train_source.h):
//
//   DIR/train-00000.pt, DIR/train-00001.pt, ...     torch.save({"inputs": X_i, "targets": Y_i})
//   DIR/shards.json (optional)                       {"train": [n_0, n_1, ...]}: samples per shard
//
// Each epoch: the shards are permuted (seed + epoch; file order without shuffling) and dealt to the
// ranks round-robin - rank r streams shards r, r+W, r+2W, ... of that order and reads no other;
// within a shard its samples are permuted (seeded by seed, epoch and shard). Every rank takes the
// same number of steps: the epoch ends when the rank with the fewest samples runs out. At most
// `cache_shards` shards are held in memory per rank. Resuming at the same world size continues at
// the exact sample; at another world size the shards are dealt differently, so the interrupted
// epoch restarts from its beginning (said in the log).
#pragma once

#include <list>
#include <string>
#include <vector>

#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/trainers/data/train_source.h"

namespace dpt {

struct ShardInfo {
  std::string path;
  int64_t samples = 0;
};

class ShardedSource final : public TrainSource {
 public:
  ShardedSource(std::vector<ShardInfo> shards, SourceOptions options, size_t cache_shards = 4);

  std::string describe() const override;
  int64_t size() const override { return total_; }
  TrainBatch first_samples(int64_t n) const override;
  int64_t steps_in_epoch(int64_t epoch, int64_t offset, const RankLayout& layout) const override;
  TrainBatch micro_batch(int64_t epoch, int64_t offset, int64_t k, const RankLayout& layout) const override;
  bool resumes_exactly_at_other_world_sizes() const override { return false; }

  // The shards rank `layout.rank` streams in `epoch`, in order (indices into the shard list).
  std::vector<size_t> shards_of(int64_t epoch, const RankLayout& layout) const;
  // Sample j of shard s in `epoch`'s order: the index within the shard.
  int64_t sample_in_shard(int64_t epoch, size_t shard, int64_t j) const;

 private:
  std::shared_ptr<const TensorDataset> load(size_t shard) const;  // through the LRU cache
  torch::Tensor order_in_shard(int64_t epoch, size_t shard) const;  // cached per (epoch, shard)
  int64_t samples_of(int64_t epoch, const RankLayout& layout) const;

  std::vector<ShardInfo> shards_;
  std::vector<int64_t> first_sample_;  // global index of each shard's first sample
  int64_t total_ = 0;
  SourceOptions options_;
  size_t cache_shards_;
  mutable std::mutex mutex_;
  mutable std::list<std::pair<size_t, std::shared_ptr<const TensorDataset>>> cache_;  // most recent first
  // The dtype and per-sample shape of every input and target part of the first shard read: every
  // other shard must match it (else its samples could not be stacked with theirs).
  mutable std::string sample_layout_;
  mutable std::string sample_layout_origin_;
  struct Order {
    int64_t epoch;
    size_t shard;
    torch::Tensor order;
  };
  mutable std::list<Order> orders_;  // most recent first
};

// The shards of DIR's `split` with their sample counts: from DIR/shards.json when it lists them,
// else counted by loading every shard on rank 0 alone (said in the log) and broadcast, so the other
// ranks read only their own shards. `world` may be null. Empty when there are no shards.
std::vector<ShardInfo> find_shards(const std::string& directory, const std::string& split,
                                   const CommunicatorPtr& world);

}  // namespace dpt
