// Per-sample randomness for data augmentation, independent of threads and world size.
//
// A transform never draws from a global or per-thread generator: it gets a SampleRng seeded from
// (seed, epoch, dataset index). The same sample in the same epoch is therefore augmented the same
// way whichever worker thread runs it, with 0, 1 or 16 workers, on 1 or 64 ranks, and after a
// resume. Different epochs and different samples get independent streams.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace dpt {

// SplitMix64's finalizer: a bijection of 64-bit words in which every input bit flips about half
// the output bits.
uint64_t mix64(uint64_t z);
// SplitMix64-mixed hash of (seed, epoch, index): the initial state of the sample's stream.
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index);

class SampleRng {
 public:
  explicit SampleRng(uint64_t state) : state_(state) {}
  SampleRng(uint64_t seed, int64_t epoch, int64_t index) : state_(sample_seed(seed, epoch, index)) {}

  uint64_t next_u64();  // SplitMix64
  double uniform();     // [0, 1)
  // Uniform integer in [low, high] (both included).
  int64_t uniform_int(int64_t low, int64_t high);
  bool bernoulli(double p) { return uniform() < p; }
  // A torch CPU generator seeded from this stream, for torch ops (torch::rand(..., generator)).
  at::Generator torch_generator();

 private:
  uint64_t state_;
};

}  // namespace dpt
