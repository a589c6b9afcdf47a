// Opt-in preprocessing of one example, run on the PreprocessPool's workers.
//
// A Transform is any callable (Example, SampleRng&) -> Example. Random transforms draw only from
// the SampleRng they are given (seeded from (seed, epoch, dataset index), see sample_rng.h), so
// results do not depend on the number of workers. Transforms must not modify the input tensors in
// place (a TensorDataset hands out views of its storage); the ones here never do.
//
//   dpt::Transform augment = dpt::compose({dpt::RandomCrop(28, 4), dpt::RandomHorizontalFlip(0.5),
//                                          dpt::Normalize({0.2860}, {0.3530})});
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/data/sample_rng.h"

namespace dpt {

using Transform = std::function<Example(Example, SampleRng&)>;

// Applies the transforms left to right; empty (unset) transforms are skipped.
Transform compose(std::vector<Transform> transforms);

// input = (input - mean[c]) / std[c] per channel c of a [C,H,W] input; one value applies to all
// channels. Like torchvision.transforms.Normalize.
class Normalize {
 public:
  Normalize(std::vector<double> mean, std::vector<double> std);
  Example operator()(Example example, SampleRng& rng) const;

 private:
  torch::Tensor mean_;  // [C,1,1]
  torch::Tensor std_;
};

// Pads [C,H,W] by `padding` zeros on every side, then cuts a random size x size window. Like
// torchvision.transforms.RandomCrop(size, padding).
class RandomCrop {
 public:
  RandomCrop(int64_t size, int64_t padding = 0);
  Example operator()(Example example, SampleRng& rng) const;

 private:
  int64_t size_;
  int64_t padding_;
};

// Mirrors the last (width) dimension with probability p.
class RandomHorizontalFlip {
 public:
  explicit RandomHorizontalFlip(double p = 0.5);
  Example operator()(Example example, SampleRng& rng) const;

 private:
  double p_;
};

}  // namespace dpt
