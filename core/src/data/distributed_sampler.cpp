#include "dptrain/core/data/distributed_sampler.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "dptrain/core/error.h"

namespace dpt {

DistributedSampler::DistributedSampler(int64_t dataset_size, int rank, int world_size, bool shuffle, uint64_t seed,
                                       bool drop_last)
    : dataset_size_(dataset_size),
      rank_(rank),
      world_size_(world_size),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  DPT_CHECK(dataset_size >= 0, InvalidArgumentError, "DistributedSampler: dataset size must be >= 0, got ",
            dataset_size);
  DPT_CHECK(world_size >= 1, InvalidArgumentError, "DistributedSampler: world size must be >= 1, got ", world_size);
  DPT_CHECK(rank >= 0 && rank < world_size, InvalidArgumentError, "DistributedSampler: rank ", rank,
            " out of range [0, ", world_size, ")");
}

void DistributedSampler::set_epoch(int64_t epoch) {
  DPT_CHECK(epoch >= 0, InvalidArgumentError, "DistributedSampler: epoch must be >= 0, got ", epoch);
  if (epoch != epoch_) start_ = 0;
  epoch_ = epoch;
}

std::vector<int64_t> DistributedSampler::epoch_order() const {
  std::vector<int64_t> order(static_cast<size_t>(dataset_size_));
  if (!shuffle_ || dataset_size_ == 0) {
    std::iota(order.begin(), order.end(), int64_t{0});
    return order;
  }
  // PyTorch: g = torch.Generator(); g.manual_seed(seed + epoch); torch.randperm(n, generator=g).
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed_ + static_cast<uint64_t>(epoch_));
  torch::Tensor permutation = torch::randperm(dataset_size_, generator, torch::kInt64);
  const int64_t* data = permutation.data_ptr<int64_t>();
  std::copy(data, data + dataset_size_, order.begin());
  return order;
}

int64_t DistributedSampler::num_samples() const {
  const int64_t rest = remaining();
  if (rest <= 0) return 0;
  return drop_last_ ? rest / world_size_ : (rest + world_size_ - 1) / world_size_;
}

std::vector<int64_t> DistributedSampler::indices() const {
  const int64_t count = num_samples();
  std::vector<int64_t> mine;
  if (count == 0) return mine;
  const std::vector<int64_t> order = epoch_order();
  mine.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) {
    // Past the end of the order, wrap around to its beginning (padding, as PyTorch pads).
    const int64_t position = (start_ + rank_ + k * world_size_) % dataset_size_;
    mine.push_back(order[static_cast<size_t>(position)]);
  }
  return mine;
}

SamplerState DistributedSampler::state_after(int64_t samples_consumed) const {
  DPT_CHECK(samples_consumed >= 0 && samples_consumed <= num_samples(), InvalidArgumentError,
            "DistributedSampler: ", samples_consumed, " samples consumed but the rank has ", num_samples());
  const int64_t position = start_ + std::min(remaining(), samples_consumed * world_size_);
  return SamplerState{epoch_, position};
}

void DistributedSampler::load_state(const SamplerState& state) {
  DPT_CHECK(state.epoch >= 0, InvalidArgumentError, "DistributedSampler: saved epoch ", state.epoch, " is negative");
  DPT_CHECK(state.position >= 0 && state.position <= dataset_size_, InvalidArgumentError,
            "DistributedSampler: saved position ", state.position, " is outside the dataset of ", dataset_size_,
            " samples (a checkpoint of another dataset?)");
  epoch_ = state.epoch;
  start_ = state.position;
}

}  // namespace dpt
