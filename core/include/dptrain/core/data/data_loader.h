// DataLoader: dataset + DistributedSampler + transform + batching on a PreprocessPool.
//
//   auto train = std::make_shared<dpt::IdxDataset>(dpt::load_mnist(dir, "train"));
//   dpt::DataLoader loader(train, dpt::DistributedSampler(train->size(), rank, world_size),
//                          dpt::DataLoaderOptions().batch_size(64).workers(4).device(device),
//                          dpt::compose({dpt::RandomCrop(28, 4), dpt::Normalize({0.286}, {0.353})}));
//   for (int64_t e = 0; e < epochs; ++e) {
//     for (dpt::Batch& batch : loader.epoch(e)) {
//       auto x = batch.inputs.to(device, /*non_blocking=*/true);   // pinned when device is CUDA
//       auto y = batch.targets.to(device, /*non_blocking=*/true);
//       ...
//     }
//   }
//
// Batches arrive in the sampler's order whatever the number of workers; workers build whole
// batches ahead of the trainer (options.queue_depth of them at most). The transform of sample i in
// epoch e draws from SampleRng(options.seed, e, i): identical results for any worker count and
// world size. An exception while loading or transforming sample i is re-thrown from the loop as a
// PreprocessError naming i. Leaving the loop early (break, exception) or destroying the loader
// stops the workers.
//
// Checkpoints: state() says how far the current epoch got; a new loader (even with another world
// size) given load_state() continues from there: `for (auto& b : loader.epoch(state.epoch))`.
#pragma once

#include <torch/arg.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "dptrain/core/data/collate.h"
#include "dptrain/core/data/dataset.h"
#include "dptrain/core/data/distributed_sampler.h"
#include "dptrain/core/data/preprocess_pool.h"
#include "dptrain/core/data/transforms.h"

namespace dpt {

// Auto: pinned when options.device is a CUDA device and CUDA is available at run time.
enum class PinMemory { Auto, On, Off };

struct DataLoaderOptions {
  TORCH_ARG(int64_t, batch_size) = 1;  // per rank, as in PyTorch DDP
  TORCH_ARG(int, workers) = 0;         // preprocessing threads; 0 loads on the calling thread
  TORCH_ARG(int, queue_depth) = 0;     // batches prepared ahead; 0 means 2 * workers
  TORCH_ARG(bool, drop_last) = false;  // drop this rank's last, partial batch
  TORCH_ARG(uint64_t, seed) = 0;       // of the per-sample random transforms
  TORCH_ARG(PinMemory, pin_memory) = PinMemory::Auto;
  // Where the trainer will copy the batches (the loader itself does not copy): decides pinning.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
};

namespace detail {
struct LoaderProgress;
}

// The batches of one epoch: a single-pass input range. Keep it alive, and do not move it, while
// iterating (its iterators point at it); range-for does both right.
class EpochBatches {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;
    iterator() = default;
    explicit iterator(EpochBatches* owner) : owner_(owner) {}
    Batch& operator*() const { return *owner_->current_; }
    Batch* operator->() const { return &*owner_->current_; }
    iterator& operator++() {
      owner_->advance();
      if (!owner_->current_) owner_ = nullptr;
      return *this;
    }
    bool operator==(const iterator& other) const { return owner_ == other.owner_; }
    bool operator!=(const iterator& other) const { return owner_ != other.owner_; }

   private:
    EpochBatches* owner_ = nullptr;
  };

  EpochBatches(OrderedStream<Batch> stream, std::shared_ptr<detail::LoaderProgress> progress);
  EpochBatches(EpochBatches&&) noexcept = default;

  iterator begin();
  iterator end() { return iterator(); }
  int64_t size() const { return stream_.size(); }  // batches in this pass

 private:
  void advance();
  OrderedStream<Batch> stream_;
  std::shared_ptr<detail::LoaderProgress> progress_;
  std::optional<Batch> current_;
  bool started_ = false;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, DistributedSampler sampler,
             DataLoaderOptions options = DataLoaderOptions(), Transform transform = Transform());

  // Selects epoch `e` on the sampler and returns its batches. Starting a new epoch (or destroying
  // the loader) cancels the previous epoch's workers.
  EpochBatches epoch(int64_t e);

  // Batches per rank in a whole epoch (the same on every rank).
  int64_t steps_per_epoch() const;
  // Where the last epoch() pass stands: {epoch, global position}; {epoch + 1, 0} once it is done.
  SamplerState state() const;
  // Resume from a checkpoint: the next epoch(state.epoch) continues at state.position.
  void load_state(const SamplerState& state);

  const DistributedSampler& sampler() const { return sampler_; }
  const DataLoaderOptions& options() const { return options_; }
  bool pins_memory() const { return pin_memory_; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  DistributedSampler sampler_;
  DataLoaderOptions options_;
  Transform transform_;
  bool pin_memory_;
  std::shared_ptr<detail::LoaderProgress> progress_;
  std::unique_ptr<PreprocessPool> pool_;  // last: destroyed (joined) first
};

}  // namespace dpt
