#include "dptrain/core/data/sample_rng.h"

#include "dptrain/core/error.h"

namespace dpt {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  // Chained mixing: each field passes through the full avalanche, so (s, e, i) and (s, i, e) differ.
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ static_cast<uint64_t>(epoch));
  return mix64(h ^ (static_cast<uint64_t>(index) * 0x9e3779b97f4a7c15ULL));
}

uint64_t SampleRng::next_u64() {
  state_ += 0x9e3779b97f4a7c15ULL;
  return mix64(state_);
}

double SampleRng::uniform() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

int64_t SampleRng::uniform_int(int64_t low, int64_t high) {
  DPT_CHECK(low <= high, InvalidArgumentError, "SampleRng::uniform_int: empty range [", low, ", ", high, "]");
  const uint64_t span = static_cast<uint64_t>(high - low) + 1;
  if (span == 0) return static_cast<int64_t>(next_u64());  // the full 64-bit range
  // Rejection sampling: no modulo bias.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t draw = next_u64();
  while (draw >= limit) draw = next_u64();
  return low + static_cast<int64_t>(draw % span);
}

at::Generator SampleRng::torch_generator() {
  return at::make_generator<at::CPUGeneratorImpl>(next_u64());
}

}  // namespace dpt
