// A pseudo-random permutation of [0, n) evaluated one position at a time, in constant memory.
//
// torch::randperm(n) holds n int64s: for the windows of a token corpus that is 1/64 of the corpus
// (8 bytes per window of 256 uint16 tokens), 1.5 GB per rank for 100 GB of tokens, growing with
// the corpus the memory map is there to keep out of memory. KeyedPermutation computes position ->
// index instead: a balanced Feistel network over the smallest even power of two >= n (6 rounds,
// each a SplitMix64 hash of the half block and a round key), cycle-walked back into [0, n) (fewer
// than 4 evaluations expected: the domain is under 4n). A Feistel network is a bijection whatever
// its round function, so every index comes exactly once; the round keys come from (seed, epoch),
// so each epoch has its own order and the same one on every rank, worker and resume.
//
// python/dptrain_order.py computes the same order in numpy (for PyTorch code that must read the
// windows dptrain reads).
#pragma once

#include <array>
#include <cstdint>

namespace dpt {

class KeyedPermutation {
 public:
  KeyedPermutation(int64_t n, uint64_t seed, int64_t epoch);

  int64_t size() const { return static_cast<int64_t>(n_); }
  // The index at `position` of the order, position in [0, n).
  int64_t operator()(int64_t position) const;

 private:
  static constexpr int kRounds = 6;
  uint64_t encrypt(uint64_t block) const;

  uint64_t n_;
  int half_bits_;
  uint64_t half_mask_;
  std::array<uint64_t, kRounds> round_keys_{};
};

}  // namespace dpt
