#include "data_sources.h"

#include "dptrain/core/data/idx_dataset.h"
#include "dptrain/core/data/tensor_files.h"
#include "dptrain/core/data/token_file.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/trainers/data/sharded_source.h"

namespace dpt::cli {
namespace {

bool has_idx(const std::string& dir) {
  for (const char* name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"}) {
    if (fs::is_regular_file(dir + "/" + name)) return true;
  }
  return false;
}

// The first N samples of an in-memory dataset.
std::shared_ptr<Dataset> limited(std::shared_ptr<Dataset> data, int64_t limit) {
  if (limit <= 0 || limit >= data->size()) return data;
  if (auto tensors = std::dynamic_pointer_cast<TensorDataset>(data)) {
    auto first = [limit](const torch::Tensor& t) { return t.narrow(0, 0, limit).clone(); };
    auto subset = std::make_shared<TensorDataset>(tensors->inputs().map(first), tensors->targets().map(first),
                                                  tensors->origin());
    subset->set_num_classes(tensors->num_classes());
    return subset;
  }
  return data;
}

// An image folder (sorted by class) keeps an evenly spread subset instead, so every class stays
// represented; cut from the index, before any image is opened.
ImageFolderIndex limited(ImageFolderIndex all, int64_t limit) {
  const auto size = static_cast<int64_t>(all.paths.size());
  if (limit <= 0 || limit >= size) return all;
  ImageFolderIndex subset;
  subset.class_names = all.class_names;
  for (int64_t k = 0; k < limit; ++k) {
    const auto i = static_cast<size_t>(k * size / limit);
    subset.paths.push_back(all.paths[i]);
    subset.labels.push_back(all.labels[i]);
  }
  return subset;
}

std::shared_ptr<Dataset> concatenated_shards(const std::vector<std::string>& paths) {
  std::vector<Tensors> inputs, targets;
  std::optional<int64_t> classes;
  for (const auto& path : paths) {
    auto part = load_tensor_file(path);
    inputs.push_back(part.inputs());
    targets.push_back(part.targets());
    if (!classes) classes = part.num_classes();
  }
  const std::string origin = paths.size() == 1 ? paths.front() : paths.front() + " ... (" + std::to_string(paths.size()) + " shards)";
  auto data = std::make_shared<TensorDataset>(Tensors::cat(inputs), Tensors::cat(targets), origin);
  data->set_num_classes(classes);
  return data;
}

// "test" falls back to "val" for tensor files and image folders.
std::shared_ptr<Dataset> open_tensor_split(const std::string& dir, const std::string& split) {
  for (const std::string& name : split == "test" ? std::vector<std::string>{"test", "val"}
                                                 : std::vector<std::string>{split}) {
    if (fs::exists(dir + "/" + name + ".pt")) {
      return std::make_shared<TensorDataset>(load_tensor_file(dir + "/" + name + ".pt"));
    }
    auto shards = list_shards(dir, name);
    if (!shards.empty()) return concatenated_shards(shards);
  }
  DPT_THROW(IoError, "--data ", dir, ": no ", split, ".pt", split == "test" ? " (or val.pt)" : "", " nor ", split,
            "-00000.pt shards");
}

// "test" is val.bin (nanoGPT's name), else test.bin.
std::shared_ptr<Dataset> open_token_split(const std::string& dir, const std::string& split, int64_t context) {
  const auto meta = read_token_meta(dir);
  for (const std::string& name : split == "test" ? std::vector<std::string>{"val", "test"}
                                                 : std::vector<std::string>{split}) {
    if (fs::exists(dir + "/" + name + ".bin")) {
      return std::make_shared<TokenWindows>(dir + "/" + name + ".bin", context, meta);
    }
  }
  DPT_THROW(IoError, "--data ", dir, ": no ", split == "test" ? "val.bin (or test.bin)" : split + ".bin");
}

}  // namespace

DataKind detect_data(const std::string& dir) {
  DPT_CHECK(fs::is_directory(dir), InvalidArgumentError, "--data ", dir, ": no such directory");
  if (has_idx(dir)) return DataKind::Idx;
  // exists, not is_regular_file: a FIFO named train.pt is reported when read, not skipped over.
  if (fs::exists(dir + "/train.pt")) return DataKind::TensorFile;
  if (!list_shards(dir, "train").empty()) return DataKind::TensorShards;
  if (fs::exists(dir + "/train.bin")) return DataKind::TokenFile;
  if (fs::is_directory(dir + "/train")) return DataKind::ImageFolder;
  DPT_THROW(InvalidArgumentError, "--data ", dir,
            ": no training data found; expected MNIST IDX files (train-images-idx3-ubyte[.gz]), a tensor file "
            "train.pt, shards train-00000.pt, ..., an image folder train/<class>/*.png|jpg, or token files "
            "train.bin (+ val.bin, meta.json)");
}

const char* describe(DataKind kind) {
  switch (kind) {
    case DataKind::Idx: return "MNIST IDX files";
    case DataKind::TensorFile: return "tensor files";
    case DataKind::TensorShards: return "tensor-file shards";
    case DataKind::ImageFolder: return "image folder";
    case DataKind::TokenFile: return "token files";
  }
  return "?";
}

std::vector<std::string> class_names(const DataOptions& options) {
  if (detect_data(options.directory) != DataKind::ImageFolder) return {};
  return scan_image_folder(options.directory, "train").class_names;
}

namespace {

// The index of an image folder's split ("test" falls back to "val"), as open_split reads it; the
// evaluation split takes the training split's classes.
ImageFolderIndex image_split(const DataOptions& options, const std::string& split, const ImageFolderIndex& train) {
  if (split == "train") return limited(train, options.limit_samples);
  const std::string name = fs::is_directory(options.directory + "/test") ? "test" : "val";
  return limited(scan_image_folder(options.directory, name, train.class_names), options.limit_samples);
}

}  // namespace

std::vector<std::string> sample_files(const DataOptions& options, const std::string& split) {
  if (detect_data(options.directory) != DataKind::ImageFolder) return {};
  std::vector<std::string> files = image_split(options, split, scan_image_folder(options.directory, "train")).paths;
  const std::string prefix = options.directory + "/";
  for (auto& file : files) {
    if (file.rfind(prefix, 0) == 0) file = file.substr(prefix.size());
  }
  return files;
}

std::shared_ptr<Dataset> open_split(const DataOptions& options, const std::string& split,
                                    const CommunicatorPtr& /*world*/) {
  const auto& dir = options.directory;
  std::shared_ptr<Dataset> data;
  switch (detect_data(dir)) {
    case DataKind::Idx:
      data = std::make_shared<IdxDataset>(load_mnist(dir, split));
      break;
    case DataKind::TensorFile:
    case DataKind::TensorShards:
      data = open_tensor_split(dir, split);
      break;
    case DataKind::TokenFile: {
      if (options.limit_samples > 0) DPT_LOG_WARN("--limit-samples does not apply to token files");
      return open_token_split(dir, split, options.context);
    }
    case DataKind::ImageFolder: {
      const auto train = scan_image_folder(dir, "train");  // read once: the split's classes and channels
      if (split == "train") {
        return std::make_shared<ImageFolderDataset>(image_split(options, split, train), options.images);
      }
      // The evaluation split is decoded like the training split: same classes, same channels.
      ImageFolderOptions images = options.images;
      if (images.channels == 0) images.channels = image_channels(train.paths.front(), images.max_pixels);
      return std::make_shared<ImageFolderDataset>(image_split(options, split, train), images);
    }
  }
  return limited(std::move(data), options.limit_samples);
}

std::unique_ptr<TrainSource> open_train_source(const DataOptions& options, SourceOptions source,
                                               const CommunicatorPtr& world) {
  const DataKind kind = detect_data(options.directory);
  if (kind == DataKind::TensorShards) {
    if (options.limit_samples > 0) DPT_LOG_WARN("--limit-samples does not apply to sharded training data");
    return std::make_unique<ShardedSource>(find_shards(options.directory, "train", world), std::move(source));
  }
  // A token corpus's windows number in the billions: their order is computed, not held (8 bytes a
  // window would grow with the corpus the memory map keeps out of memory; keyed_permutation.h).
  if (kind == DataKind::TokenFile) source.order = ShuffleOrder::keyed;
  return std::make_unique<IndexedSource>(open_split(options, "train", world), std::move(source));
}

}  // namespace dpt::cli
