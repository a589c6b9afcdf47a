#include "dptrain/core/data/data_loader.h"

#include <utility>
#include <vector>

#include "dptrain/core/error.h"

namespace dpt {
namespace detail {

// How far the consumer got in the current epoch() pass; touched only by the consumer's thread.
struct LoaderProgress {
  std::optional<DistributedSampler> sampler;  // as it was when the pass started
  int64_t samples_consumed = 0;
  bool finished = false;
};

}  // namespace detail

namespace {

using detail::concat;

[[noreturn]] void rethrow_for_sample(int64_t index, int64_t step, int64_t epoch) {
  const std::string where = concat("sample ", index, " (batch ", step, " of epoch ", epoch, ")");
  try {
    throw;
  } catch (const Error& e) {
    throw PreprocessError(e.kind(), index, concat("loading ", where, " failed: ", e.what()), std::current_exception());
  } catch (const std::exception& e) {
    throw PreprocessError(ErrorKind::Data, index, concat("loading ", where, " failed: ", e.what()),
                          std::current_exception());
  } catch (...) {
    throw PreprocessError(ErrorKind::Data, index, concat("loading ", where, " failed with a non-standard exception"),
                          std::current_exception());
  }
}

}  // namespace

EpochBatches::EpochBatches(OrderedStream<Batch> stream, std::shared_ptr<detail::LoaderProgress> progress)
    : stream_(std::move(stream)), progress_(std::move(progress)) {}

EpochBatches::iterator EpochBatches::begin() {
  DPT_CHECK(!started_, InvalidArgumentError,
            "EpochBatches is a single pass: call DataLoader::epoch() again to iterate again");
  started_ = true;
  advance();
  return current_ ? iterator(this) : iterator();
}

void EpochBatches::advance() {
  current_.reset();
  current_ = stream_.next();
  if (current_) {
    progress_->samples_consumed += current_->size();
  } else {
    progress_->finished = true;
  }
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, DistributedSampler sampler, DataLoaderOptions options,
                       Transform transform)
    : dataset_(std::move(dataset)),
      sampler_(std::move(sampler)),
      options_(options),
      transform_(std::move(transform)),
      pin_memory_(options.pin_memory() == PinMemory::On ||
                  (options.pin_memory() == PinMemory::Auto && options.device().is_cuda() && pinned_memory_available())),
      progress_(std::make_shared<detail::LoaderProgress>()) {
  DPT_CHECK(dataset_ != nullptr, InvalidArgumentError, "DataLoader: the dataset is null");
  DPT_CHECK(options_.batch_size() > 0, InvalidArgumentError, "DataLoader: batch size must be > 0, got ",
            options_.batch_size());
  DPT_CHECK(sampler_.dataset_size() == dataset_->size(), InvalidArgumentError, "DataLoader: the sampler covers ",
            sampler_.dataset_size(), " samples but the dataset has ", dataset_->size());
  DPT_CHECK(options_.pin_memory() != PinMemory::On || pinned_memory_available(), UnsupportedError,
            "DataLoader: pin_memory On needs CUDA, which is not available");
  pool_ = std::make_unique<PreprocessPool>(options_.workers(), options_.queue_depth());
}

int64_t DataLoader::steps_per_epoch() const {
  DistributedSampler whole(sampler_.dataset_size(), sampler_.rank(), sampler_.world_size(), sampler_.shuffle(),
                           sampler_.seed(), sampler_.drop_last());
  const int64_t samples = whole.num_samples();
  const int64_t batch = options_.batch_size();
  return options_.drop_last() ? samples / batch : (samples + batch - 1) / batch;
}

EpochBatches DataLoader::epoch(int64_t e) {
  sampler_.set_epoch(e);
  auto indices = std::make_shared<const std::vector<int64_t>>(sampler_.indices());
  const int64_t batch_size = options_.batch_size();
  const auto samples = static_cast<int64_t>(indices->size());
  const int64_t steps = options_.drop_last() ? samples / batch_size : (samples + batch_size - 1) / batch_size;

  // A fresh progress record: an EpochBatches of an earlier pass keeps its own.
  progress_ = std::make_shared<detail::LoaderProgress>();
  progress_->sampler = sampler_;

  // Captures copies and shared pointers only, never `this`: workers may outlive nothing of ours.
  auto load_batch = [dataset = dataset_, transform = transform_, indices, batch_size, samples, e,
                     seed = options_.seed(), pin = pin_memory_](int64_t step) -> Batch {
    const int64_t begin = step * batch_size;
    const int64_t end = std::min(samples, begin + batch_size);
    std::vector<Example> examples;
    std::vector<int64_t> batch_indices(indices->begin() + begin, indices->begin() + end);
    examples.reserve(batch_indices.size());
    for (int64_t index : batch_indices) {
      try {
        Example example = dataset->get(index);
        if (transform) {
          SampleRng rng(seed, e, index);
          example = transform(std::move(example), rng);
        }
        examples.push_back(std::move(example));
      } catch (...) {
        rethrow_for_sample(index, step, e);
      }
    }
    return collate(examples, std::move(batch_indices), pin);
  };
  return EpochBatches(pool_->map<Batch>(steps, load_batch), progress_);
}

SamplerState DataLoader::state() const {
  if (!progress_->sampler) return sampler_.state_after(0);
  if (progress_->finished) return SamplerState{progress_->sampler->epoch() + 1, 0};
  return progress_->sampler->state_after(progress_->samples_consumed);
}

void DataLoader::load_state(const SamplerState& state) {
  sampler_.load_state(state);
  progress_ = std::make_shared<detail::LoaderProgress>();
}

}  // namespace dpt
