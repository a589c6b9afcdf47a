#include "dptrain/trainers/data/train_source.h"

#include <ATen/CPUGeneratorImpl.h>

#include "dptrain/core/data/image_folder.h"
#include "dptrain/core/data/keyed_permutation.h"
#include "dptrain/core/data/sample_rng.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/data/token_file.h"
#include "dptrain/core/error.h"

namespace dpt {

TrainBatch gather_examples(const Dataset& data, const torch::Tensor& indices,
                      const std::function<Example(Example, int64_t)>& map) {
  if (!map) {
    if (auto tensors = dynamic_cast<const TensorDataset*>(&data)) {
      auto rows = [&indices](const torch::Tensor& t) { return t.index_select(0, indices); };
      return {tensors->inputs().map(rows), tensors->targets().map(rows)};
    }
  }
  std::vector<Tensors> inputs, targets;
  auto accessor = indices.accessor<int64_t, 1>();
  for (int64_t i = 0; i < indices.size(0); ++i) {
    Example example = data.get(accessor[i]);
    if (map) example = map(std::move(example), accessor[i]);
    inputs.push_back(example.input);
    targets.push_back(example.target);
  }
  return {Tensors::stack(inputs), Tensors::stack(targets)};
}

TrainBatch pinned(const TrainBatch& batch) {
  auto pin = [](const torch::Tensor& t) { return t.pin_memory(); };
  return {batch.first.map(pin), batch.second.map(pin)};
}

std::optional<int64_t> largest_label(const Dataset& data) {
  if (auto tokens = dynamic_cast<const TokenWindows*>(&data)) return tokens->vocab_size() - 1;
  if (auto images = dynamic_cast<const ImageFolderDataset*>(&data)) {
    return static_cast<int64_t>(images->class_names().size()) - 1;
  }
  if (auto tensors = dynamic_cast<const TensorDataset*>(&data)) {
    if (tensors->targets().is_tuple()) return std::nullopt;
    const auto& targets = tensors->targets().parts().front();
    if (targets.dim() == 1 && !c10::isFloatingType(targets.scalar_type())) return targets.max().item<int64_t>();
  }
  return std::nullopt;
}

void check_class_labels(const Dataset& data) {
  auto tensors = dynamic_cast<const TensorDataset*>(&data);
  if (!tensors || tensors->targets().is_tuple()) return;
  const auto& labels = tensors->targets().parts().front();
  if (labels.dim() != 1 || c10::isFloatingType(labels.scalar_type()) || c10::isComplexType(labels.scalar_type())) return;
  const std::string origin = tensors->origin().empty() ? std::string("the dataset") : tensors->origin();
  DPT_CHECK(labels.scalar_type() == torch::kLong, DataError, origin, ": class labels of type ",
            c10::toString(labels.scalar_type()), "; cross_entropy and nll take int64 labels (save them with .long())");
  if (labels.numel() == 0) return;
  auto negative = (labels < 0).nonzero();
  DPT_CHECK(negative.numel() == 0, DataError, origin, ": class label ", labels[negative[0][0]].item<int64_t>(),
            " of sample ", negative[0][0].item<int64_t>(), " is negative (labels are 0 ... classes - 1)");
  if (const auto classes = tensors->num_classes()) {
    auto beyond = (labels >= *classes).nonzero();
    DPT_CHECK(beyond.numel() == 0, DataError, origin, ": class label ", labels[beyond[0][0]].item<int64_t>(),
              " of sample ", beyond[0][0].item<int64_t>(), " is beyond the ", *classes,
              " classes the file declares (labels are 0 ... ", *classes - 1, ")");
  }
}

std::optional<int64_t> declared_classes(const Dataset& data) {
  if (auto tokens = dynamic_cast<const TokenWindows*>(&data)) return tokens->vocab_size();  // next-token classes
  if (auto images = dynamic_cast<const ImageFolderDataset*>(&data)) {
    return static_cast<int64_t>(images->class_names().size());
  }
  if (auto tensors = dynamic_cast<const TensorDataset*>(&data)) return tensors->num_classes();
  return std::nullopt;
}

IndexedSource::IndexedSource(std::shared_ptr<const Dataset> data, SourceOptions options)
    : data_(std::move(data)), options_(std::move(options)) {
  DPT_CHECK(data_ && data_->size() > 0, DataError, "the training set is empty");
}

std::string IndexedSource::describe() const { return std::to_string(data_->size()) + " samples"; }

TrainBatch IndexedSource::first_samples(int64_t n) const {
  return gather_examples(*data_, torch::arange(std::min<int64_t>(n, data_->size()), torch::kLong));
}

torch::Tensor IndexedSource::randperm_order(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (epoch != cached_epoch_) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(options_.seed + epoch));
    cached_order_ = torch::randperm(data_->size(), generator, torch::TensorOptions().dtype(torch::kLong));
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

torch::Tensor IndexedSource::indices_at(int64_t epoch, int64_t begin, int64_t end, int64_t step) const {
  if (options_.shuffle && options_.order == ShuffleOrder::randperm) {
    return randperm_order(epoch).slice(0, begin, end, step);
  }
  const int64_t stop = std::max(begin, std::min(end, data_->size()));  // as slice() clamps
  auto positions = torch::arange(begin, stop, step, torch::kLong);
  if (!options_.shuffle) return positions;
  const KeyedPermutation permutation(data_->size(), static_cast<uint64_t>(options_.seed), epoch);
  auto* position = positions.data_ptr<int64_t>();
  for (int64_t i = 0; i < positions.numel(); ++i) position[i] = permutation(position[i]);
  return positions;
}

int64_t IndexedSource::steps_in_epoch(int64_t /*epoch*/, int64_t offset, const RankLayout& layout) const {
  return std::max<int64_t>(0, (data_->size() - offset) / layout.global_batch());
}

TrainBatch IndexedSource::micro_batch(int64_t epoch, int64_t offset, int64_t k, const RankLayout& layout) const {
  // Global micro-batch k covers positions offset + [k * W * B, (k + 1) * W * B) of the epoch's
  // order; rank r takes every W-th of them, starting at r (DistributedSampler over the remainder).
  const int64_t per_micro = static_cast<int64_t>(layout.world) * layout.batch;
  const int64_t begin = offset + k * per_micro + layout.rank;
  auto indices = indices_at(epoch, begin, offset + (k + 1) * per_micro, layout.world);
  TrainBatch batch;
  if (!options_.transform) {
    batch = gather_examples(*data_, indices);
  } else {
    batch = gather_examples(*data_, indices, [&](Example example, int64_t index) {
      SampleRng rng(static_cast<uint64_t>(options_.seed), epoch, index);
      return options_.transform(std::move(example), rng);
    });
  }
  return options_.pin_memory ? pinned(batch) : batch;
}

}  // namespace dpt
