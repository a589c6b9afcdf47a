#include "dptrain/core/data/transforms.h"

#include <utility>

#include "dptrain/core/error.h"

namespace dpt {

Transform compose(std::vector<Transform> transforms) {
  return [transforms = std::move(transforms)](Example example, SampleRng& rng) {
    for (const auto& transform : transforms) {
      if (transform) example = transform(std::move(example), rng);
    }
    return example;
  };
}

Normalize::Normalize(std::vector<double> mean, std::vector<double> std) {
  DPT_CHECK(!mean.empty() && mean.size() == std.size(), InvalidArgumentError,
            "Normalize: mean and std need the same (non-zero) number of channels, got ", mean.size(), " and ",
            std.size());
  for (double s : std) DPT_CHECK(s > 0, InvalidArgumentError, "Normalize: std must be > 0, got ", s);
  const auto channels = static_cast<int64_t>(mean.size());
  mean_ = torch::tensor(mean, torch::kFloat32).view({channels, 1, 1});
  std_ = torch::tensor(std, torch::kFloat32).view({channels, 1, 1});
}

Example Normalize::operator()(Example example, SampleRng& /*rng*/) const {
  const torch::Tensor& x = example.input.tensor("Normalize: the inputs");
  DPT_CHECK(x.dim() == 3, InvalidArgumentError, "Normalize expects a [C,H,W] input, got ", x.sizes());
  DPT_CHECK(mean_.size(0) == 1 || mean_.size(0) == x.size(0), InvalidArgumentError, "Normalize has ", mean_.size(0),
            " channel values but the input has ", x.size(0), " channels");
  example.input = (x.to(torch::kFloat32) - mean_) / std_;
  return example;
}

RandomCrop::RandomCrop(int64_t size, int64_t padding) : size_(size), padding_(padding) {
  DPT_CHECK(size > 0, InvalidArgumentError, "RandomCrop: size must be > 0, got ", size);
  DPT_CHECK(padding >= 0, InvalidArgumentError, "RandomCrop: padding must be >= 0, got ", padding);
}

Example RandomCrop::operator()(Example example, SampleRng& rng) const {
  torch::Tensor x = example.input.tensor("RandomCrop: the inputs");
  DPT_CHECK(x.dim() == 3, InvalidArgumentError, "RandomCrop expects a [C,H,W] input, got ", x.sizes());
  if (padding_ > 0) x = torch::constant_pad_nd(x, {padding_, padding_, padding_, padding_}, 0);
  const int64_t height = x.size(1);
  const int64_t width = x.size(2);
  DPT_CHECK(height >= size_ && width >= size_, InvalidArgumentError, "RandomCrop: a ", size_, "x", size_,
            " crop does not fit a padded ", height, "x", width, " input");
  const int64_t top = rng.uniform_int(0, height - size_);
  const int64_t left = rng.uniform_int(0, width - size_);
  x = x.slice(1, top, top + size_).slice(2, left, left + size_);
  // A view of the dataset's storage when there is no padding: copy, so it owns its memory.
  example.input = padding_ > 0 ? x.contiguous() : x.clone(at::MemoryFormat::Contiguous);
  return example;
}

RandomHorizontalFlip::RandomHorizontalFlip(double p) : p_(p) {
  DPT_CHECK(p >= 0.0 && p <= 1.0, InvalidArgumentError, "RandomHorizontalFlip: p must be in [0, 1], got ", p);
}

Example RandomHorizontalFlip::operator()(Example example, SampleRng& rng) const {
  const torch::Tensor& x = example.input.tensor("RandomHorizontalFlip: the inputs");
  if (rng.bernoulli(p_)) example.input = x.flip({-1});
  return example;
}

}  // namespace dpt
