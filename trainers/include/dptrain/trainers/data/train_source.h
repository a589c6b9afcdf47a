// Where Trainer::fit takes its training samples from: each epoch, this rank's micro-batches.
//
//   dpt::IndexedSource  any dpt::Dataset (IDX files, a tensor file, an image folder, token windows):
//                       each epoch a permutation of all samples (seed + epoch), rank r of W taking
//                       positions r, r+W, ... (DistributedSampler's contract); exact resume at any
//                       world size
//   dpt::ShardedSource  tensor-file shards larger than memory, streamed: each epoch the shards are
//                       permuted and dealt to the ranks round-robin, each rank reads only its own
//                       shards (a few at a time) and permutes the samples within each
//
// Both apply the per-sample transform (seeded per sample, see sample_rng.h) and pin batches for a
// CUDA copy. micro_batch() is called by the preprocessing pool's workers, in any order and
// concurrently: it must be thread-safe and depend only on its arguments.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/data/transforms.h"

namespace dpt {

// This rank's place in the job and the shape of one optimizer step.
struct RankLayout {
  int rank = 0;
  int world = 1;
  int64_t batch = 1;         // samples per micro-batch per rank
  int64_t accumulation = 1;  // micro-batches per optimizer step
  int64_t global_batch() const { return static_cast<int64_t>(world) * batch * accumulation; }
};

using TrainBatch = std::pair<Tensors, Tensors>;  // (inputs, targets), stacked; either may be a tuple
// The batch in page-locked memory, for an asynchronous copy to a GPU.
TrainBatch pinned(const TrainBatch& batch);

// How a shuffled epoch is ordered (IndexedSource).
enum class ShuffleOrder {
  randperm,  // torch::randperm(N) from seed + epoch: PyTorch's DistributedSampler's order, 8 bytes a sample
  keyed,     // a KeyedPermutation of (seed, epoch) computed per position: constant memory (token corpora)
};

struct SourceOptions {
  bool shuffle = true;
  ShuffleOrder order = ShuffleOrder::randperm;
  int64_t seed = 0;
  Transform transform;  // per sample, training only; empty: none
  bool pin_memory = false;
};

class TrainSource {
 public:
  virtual ~TrainSource() = default;
  // For logs: "12 shards, 60000 samples".
  virtual std::string describe() const = 0;
  // Samples of one epoch over all ranks.
  virtual int64_t size() const = 0;
  // The first `n` samples (no transform), to check the model fits the data.
  virtual TrainBatch first_samples(int64_t n) const = 0;
  // The largest class label when it is cheap to know (labels in memory); nullopt otherwise.
  virtual std::optional<int64_t> largest_label() const { return std::nullopt; }
  // Optimizer steps every rank takes in `epoch`, after `offset` samples of it were consumed at
  // another world size (see resumes_exactly_at_other_world_sizes).
  virtual int64_t steps_in_epoch(int64_t epoch, int64_t offset, const RankLayout& layout) const = 0;
  // Whether steps_in_epoch(epoch, 0, layout) is the same for every epoch (then a plan of many
  // epochs is one product instead of a count per epoch).
  virtual bool same_steps_every_epoch() const { return false; }
  // This rank's micro-batch `k` of `epoch` (k = 0 is the first after `offset`).
  virtual TrainBatch micro_batch(int64_t epoch, int64_t offset, int64_t k, const RankLayout& layout) const = 0;
  // The samples as one in-memory Dataset, when the source is one (for checks of all labels).
  virtual const Dataset* dataset() const { return nullptr; }
  // Whether an epoch interrupted at one world size continues exactly at another; when not, the
  // interrupted epoch restarts from its first sample (no sample is skipped).
  virtual bool resumes_exactly_at_other_world_sizes() const = 0;
};

// Class labels in memory (1-D integer targets of a TensorDataset) checked before training: int64
// (what cross_entropy and nll take), none negative. DataError naming the file and the first bad
// sample. Other datasets and targets pass (floating targets are not class labels).
// With the classes the data declares (a tensor file's "num_classes"), also none beyond them.
void check_class_labels(const Dataset& data);
// The classes a dataset declares: an image folder's class folders, a tensor file's "num_classes";
// nullopt when it declares none (then only the largest label says how many there are).
std::optional<int64_t> declared_classes(const Dataset& data);
// The largest class label of `data` when it is cheap to know (labels in memory: a TensorDataset
// of integer labels, an image folder), else nullopt.
std::optional<int64_t> largest_label(const Dataset& data);

// The in-memory (or decode-on-demand) source: a Dataset dealt out as DistributedSampler does.
class IndexedSource final : public TrainSource {
 public:
  IndexedSource(std::shared_ptr<const Dataset> data, SourceOptions options);
  std::string describe() const override;
  int64_t size() const override { return data_->size(); }
  TrainBatch first_samples(int64_t n) const override;
  std::optional<int64_t> largest_label() const override { return dpt::largest_label(*data_); }
  int64_t steps_in_epoch(int64_t epoch, int64_t offset, const RankLayout& layout) const override;
  bool same_steps_every_epoch() const override { return true; }
  const Dataset* dataset() const override { return data_.get(); }
  TrainBatch micro_batch(int64_t epoch, int64_t offset, int64_t k, const RankLayout& layout) const override;
  bool resumes_exactly_at_other_world_sizes() const override { return true; }

 private:
  torch::Tensor randperm_order(int64_t epoch) const;  // the epoch's torch::randperm, cached
  // Positions begin, begin + step, ... < end of the epoch's order: the dataset indices there.
  torch::Tensor indices_at(int64_t epoch, int64_t begin, int64_t end, int64_t step) const;

  std::shared_ptr<const Dataset> data_;
  SourceOptions options_;
  mutable std::mutex mutex_;
  mutable int64_t cached_epoch_ = -1;
  mutable torch::Tensor cached_order_;
};

// Samples `indices` of `data`, each through `map` when given, stacked (index_select for a
// TensorDataset without a map).
TrainBatch gather_examples(const Dataset& data, const torch::Tensor& indices,
                      const std::function<Example(Example, int64_t)>& map = nullptr);

}  // namespace dpt
