// Which dataset indices each rank reads in an epoch: torch.utils.data.DistributedSampler in C++.
//
// The epoch order is a permutation of [0, N) drawn from (seed + epoch) with torch::randperm and a
// seeded CPU generator - the same order PyTorch's DistributedSampler produces - or 0..N-1 when
// shuffle is off. It is the same on every rank. Rank r of W takes positions r, r+W, r+2W, ... of
// it. Without drop_last the order is padded by wrapping around to ceil(N/W)*W, so every rank runs
// the same number of steps (a few samples are then seen twice); with drop_last it is cut to
// floor(N/W)*W.
//
// Equivalence: W ranks each reading batches of B see at step k, together, positions
// [k*W*B, (k+1)*W*B) of the (padded) order - exactly the batch k of one process reading batches of
// W*B from that order. So a W-rank job sees the data a 1-rank job with W times the batch sees.
//
// Resume, possibly at another world size: state_after(n) records how far the epoch got (epoch and
// global position: positions of the order consumed by all ranks together). A sampler of any world
// size given load_state() continues from that position: the rest of the order is sharded (and
// padded or cut) over the new world size, so no sample is skipped. At the same world size the
// resumed ranks read exactly what they would have read without the restart; at another one the
// padding (which wraps to the start of the epoch order) may repeat samples seen before it.
//
// This is core: rank and world size are plain ints (take them from the communicator).
#pragma once

#include <cstdint>
#include <vector>

namespace dpt {

struct SamplerState {
  int64_t epoch = 0;
  // Positions of the epoch order already consumed by all ranks together (0 = epoch start).
  int64_t position = 0;
};

class DistributedSampler {
 public:
  DistributedSampler(int64_t dataset_size, int rank, int world_size, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false);

  // Selects the epoch (as in PyTorch: call it before each epoch, or every epoch has one order).
  // Changing the epoch clears a resume position set by load_state().
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }

  // The whole epoch order of length N, identical on every rank.
  std::vector<int64_t> epoch_order() const;
  // This rank's indices for the epoch, from the resume position on. Length num_samples().
  std::vector<int64_t> indices() const;
  int64_t num_samples() const;

  // The state once this rank has consumed `samples_consumed` of indices() (every rank the same).
  SamplerState state_after(int64_t samples_consumed) const;
  // Continues the epoch of `state` from its position; the state may come from another world size.
  void load_state(const SamplerState& state);

  int64_t dataset_size() const { return dataset_size_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool shuffle() const { return shuffle_; }
  bool drop_last() const { return drop_last_; }
  uint64_t seed() const { return seed_; }

 private:
  int64_t remaining() const { return dataset_size_ - start_; }

  int64_t dataset_size_;
  int rank_;
  int world_size_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t epoch_ = 0;
  int64_t start_ = 0;  // resume position in the epoch order
};

}  // namespace dpt
