// preprocess_bench: DataLoader throughput (samples/s) against the number of preprocessing workers,
// for a CPU-heavy augmentation, so the PreprocessPool's scaling can be seen and tracked.
//
//   build/bin/preprocess_bench --workers 1,2,4,8 --samples 4096 --out preprocess.json
//
// The dataset is synthetic (random 3x64x64 images in memory) so disk speed plays no part. Each
// sample goes through RandomCrop(64, padding 4), RandomHorizontalFlip, Normalize and
// --blur-passes 5x5 Gaussian blurs (conv2d): a few hundred microseconds of CPU per sample.
// With --images DIR it is instead the image folder DIR/train/<class>/*.jpg|png (e.g. made by
// scripts/data/make_datasets.py --format imagefolder --image-format jpg --size 224 --rgb): each
// sample is read, decoded (libjpeg-turbo / libpng), resized to --image-size and augmented
// (random crop, flip) - dptrain train's image-folder path.
// torch runs single-threaded (at::set_num_threads(1), OMP_NUM_THREADS=1; recorded in the output)
// so the measured scaling is that of the pool's threads alone, not of libtorch's intra-op pool.
// Every worker count runs one untimed warm-up pass, then --repeats timed epochs; the best epoch
// counts (the least disturbed by other processes).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_options.h"
#include "dptrain/core/data/data_loader.h"
#include "dptrain/core/data/image_folder.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/data/transforms.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/run_main.h"
#include "json_output.h"
#include "machine_info.h"

namespace {

struct Options {
  std::vector<int> workers{1, 2, 4};
  int64_t samples = 2048;
  int64_t batch_size = 32;
  int blur_passes = 4;
  int repeats = 3;
  std::string images;       // an image folder instead of synthetic tensors
  int64_t image_size = 64;
  std::string out;
};

// The CPU-heavy part: repeated 5x5 Gaussian blur of a [C,H,W] image, one channel at a time.
dpt::Transform blur(int passes) {
  auto k1 = torch::tensor({1.0f, 4.0f, 6.0f, 4.0f, 1.0f});
  auto kernel = torch::outer(k1, k1).div_(256.0f).view({1, 1, 5, 5});
  return [kernel, passes](dpt::Example example, dpt::SampleRng&) {
    auto x = example.input.tensor().unsqueeze(1);  // [C,1,H,W]: channels as a batch
    for (int i = 0; i < passes; ++i) x = torch::conv2d(x, kernel, {}, 1, 2);
    example.input = x.squeeze(1);
    return example;
  };
}

double best_epoch_seconds(dpt::DataLoader& loader, int repeats, int64_t expected_samples) {
  int64_t epoch = 0;
  for (auto& batch : loader.epoch(epoch++)) (void)batch;  // warm-up: threads, allocator
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    int64_t seen = 0;
    for (auto& batch : loader.epoch(epoch++)) seen += batch.size();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    DPT_CHECK(seen == expected_samples, InternalError, "preprocess_bench: saw ", seen, " samples, expected ",
              expected_samples);
    best = std::min(best, seconds);
  }
  return best;
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app{"preprocess_bench: DataLoader samples/s against preprocessing worker count"};
  app.add_option("--workers", options.workers, "worker counts to measure, e.g. 1,2,4 (0 = inline)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1024));
  app.add_option("--samples", options.samples, "samples per epoch")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", options.batch_size, "samples per batch")->check(CLI::PositiveNumber);
  app.add_option("--blur-passes", options.blur_passes, "5x5 blurs per sample (the CPU cost)")
      ->check(CLI::Range(0, 1000));
  app.add_option("--repeats", options.repeats, "timed epochs per worker count (the best counts)")
      ->check(CLI::PositiveNumber);
  app.add_option("--images", options.images, "image folder DIR (DIR/train/<class>/*.jpg|png) to decode instead");
  app.add_option("--image-size", options.image_size, "--images: resize to N x N")->check(CLI::PositiveNumber);
  app.add_option("--out", options.out, "JSON result file ('-' = stdout)");
  if (auto code = dpt::bench::parse(app, argc, argv)) return *code;
  DPT_CHECK(options.out.empty() || options.out == "-" || dpt::fs::parent_is_writable(options.out), InvalidArgumentError,
            "--out ", options.out, ": its directory does not exist or is not writable");
  const dpt::bench::ThreadSetup threads = dpt::bench::apply_threads(1);

  torch::manual_seed(0);
  std::shared_ptr<dpt::Dataset> data;
  int64_t size = 64;
  if (options.images.empty()) {
    data = std::make_shared<dpt::TensorDataset>(torch::rand({options.samples, 3, 64, 64}),
                                                torch::randint(10, {options.samples}));
  } else {
    dpt::ImageFolderOptions images;
    images.image_size = size = options.image_size;
    data = std::make_shared<dpt::ImageFolderDataset>(dpt::scan_image_folder(options.images, "train"), images);
    options.samples = std::min<int64_t>(options.samples, data->size());
  }
  const dpt::Transform transform =
      dpt::compose({dpt::RandomCrop(size, 4), dpt::RandomHorizontalFlip(0.5), blur(options.blur_passes),
                    dpt::Normalize({0.5}, {0.25})});

  const std::string source = options.images.empty() ? "synthetic 3x64x64 tensors" : "image folder " + options.images;
  std::printf("preprocess_bench: %lld samples (%s), batch %lld, %d blur passes, torch threads %d\n",
              static_cast<long long>(options.samples), source.c_str(), static_cast<long long>(options.batch_size),
              options.blur_passes, threads.intra_op_threads);
  std::printf("%8s %14s %10s\n", "workers", "samples/s", "speedup");
  nlohmann::json results = nlohmann::json::array();
  double baseline = 0;
  for (int workers : options.workers) {
    dpt::DataLoader loader(
        data, dpt::DistributedSampler(options.samples, 0, 1, true, 0),
        dpt::DataLoaderOptions().batch_size(options.batch_size).workers(workers).pin_memory(dpt::PinMemory::Off),
        transform);
    const double seconds = best_epoch_seconds(loader, options.repeats, options.samples);
    const double rate = static_cast<double>(options.samples) / seconds;
    if (baseline == 0) baseline = rate;
    std::printf("%8d %14.1f %9.2fx\n", workers, rate, rate / baseline);
    results.push_back(
        {{"workers", workers}, {"samples_per_s", rate}, {"epoch_seconds", seconds}, {"speedup", rate / baseline}});
  }
  nlohmann::json document = {{"benchmark", "preprocess"},
                             {"results", results},
                             {"samples", options.samples},
                             {"batch_size", options.batch_size},
                             {"blur_passes", options.blur_passes},
                             {"repeats", options.repeats},
                             {"source", source},
                             {"image_shape", options.images.empty() ? nlohmann::json({3, 64, 64})
                                                                    : nlohmann::json({size, size})},
                             {"torch_threads", threads.intra_op_threads},
                             {"threads", dpt::bench::to_json(threads)},
                             {"machine", dpt::bench::machine_info()}};
  dpt::bench::write_json(options.out, document);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return dpt::run_main("preprocess_bench", [&] { return run(argc, argv); });
}
