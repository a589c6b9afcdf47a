#include "dptrain/core/data/keyed_permutation.h"

#include "dptrain/core/data/sample_rng.h"
#include "dptrain/core/error.h"

namespace dpt {

KeyedPermutation::KeyedPermutation(int64_t n, uint64_t seed, int64_t epoch) : n_(static_cast<uint64_t>(n)) {
  DPT_CHECK(n >= 1, InvalidArgumentError, "KeyedPermutation: n must be >= 1, got ", n);
  int bits = 2;  // two halves of at least one bit each
  while (bits < 63 && (uint64_t{1} << bits) < n_) ++bits;
  half_bits_ = (bits + 1) / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
  // The stream of (seed, epoch) at index -1, which no sample's transform stream uses.
  SampleRng keys(seed, epoch, -1);
  for (auto& key : round_keys_) key = keys.next_u64();
}

uint64_t KeyedPermutation::encrypt(uint64_t block) const {
  uint64_t left = block >> half_bits_;
  uint64_t right = block & half_mask_;
  for (const uint64_t key : round_keys_) {
    const uint64_t mixed = left ^ (mix64(right ^ key) & half_mask_);
    left = right;
    right = mixed;
  }
  return (left << half_bits_) | right;
}

int64_t KeyedPermutation::operator()(int64_t position) const {
  DPT_CHECK(position >= 0 && static_cast<uint64_t>(position) < n_, InvalidArgumentError, "KeyedPermutation: position ",
            position, " out of range [0, ", n_, ")");
  // Cycle walking: the domain's permutation, applied again until it lands inside [0, n). The cycle
  // through `position` returns to it, so this ends, and distinct positions end at distinct indices.
  uint64_t index = encrypt(static_cast<uint64_t>(position));
  while (index >= n_) index = encrypt(index);
  return static_cast<int64_t>(index);
}

}  // namespace dpt
