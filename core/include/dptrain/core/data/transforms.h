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
#include "dptrain/core/serialize.h"

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

// A per-sample transform written in PyTorch: a TorchScript module (torch.jit.script(m).save(path))
// whose forward takes the sample's input tensor, or the tensor and an int seed, and returns the
// new input tensor. The seed comes from the sample's SampleRng, so a random transform gives the
// same result with any number of workers: each worker thread runs its own copy of the module
// (TorchScript folds `torch.Generator()` into one constant generator per compiled copy), always on
// the executor's unoptimized plan (whose arithmetic does not change after the first calls).
// TorchScript runs without Python's GIL, so the workers run it truly in parallel. Draw randomness from a generator seeded with it:
//
//   class Augment(torch.nn.Module):
//       def forward(self, x: torch.Tensor, seed: int) -> torch.Tensor:
//           g = torch.Generator()
//           g.manual_seed(seed)
//           if torch.rand(1, generator=g).item() < 0.5:
//               x = x.flip(-1)
//           return x
//
// ModelError naming the file when it is not a TorchScript module or its forward does not take
// (Tensor) or (Tensor, int); DataError naming the file when a call does not return a tensor.
Transform script_transform(const std::string& path);
// The same from the file's bytes (read by one rank and sent to the others: no shared file system
// needed); `path` names it in errors.
Transform script_transform(const std::string& path, Bytes bytes);

}  // namespace dpt
