#include "dptrain/core/data/image_folder.h"

#include <algorithm>
#include <cctype>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/serialize.h"

namespace dpt {
namespace {

bool is_image_name(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "png" || ext == "jpg" || ext == "jpeg";
}

std::vector<std::string> sorted_entries(const std::string& directory) {
  auto names = fs::list_directory(directory);
  std::sort(names.begin(), names.end());
  return names;
}

// One value per channel from a list of 1 or `channels` values.
torch::Tensor per_channel(const std::vector<double>& values, int64_t channels, double fallback, const char* what) {
  if (values.empty()) return torch::full({channels, 1, 1}, fallback);
  DPT_CHECK(values.size() == 1 || static_cast<int64_t>(values.size()) == channels, InvalidArgumentError, "--", what,
            ": ", values.size(), " values for images of ", channels, " channel(s); give 1 or ", channels);
  auto t = torch::tensor(values, torch::kFloat32);
  return (values.size() == 1 ? t.expand({channels}) : t).reshape({channels, 1, 1}).clone();
}

}  // namespace

ImageFolderIndex scan_image_folder(const std::string& directory, const std::string& split,
                                   const std::vector<std::string>& classes) {
  const std::string root = directory + "/" + split;
  DPT_CHECK(fs::is_directory(root), IoError, root, ": no such directory (ImageFolder layout: ", directory,
            "/train/<class>/*.png)");
  ImageFolderIndex index;
  for (const auto& name : sorted_entries(root)) {
    if (fs::is_directory(root + "/" + name)) index.class_names.push_back(name);
  }
  DPT_CHECK(!index.class_names.empty(), DataError, root, ": no class folders (expected ", root, "/<class>/<image>)");
  if (!classes.empty()) {
    for (const auto& name : index.class_names) {
      DPT_CHECK(std::find(classes.begin(), classes.end(), name) != classes.end(), DataError, root, "/", name,
                ": class '", name, "' is not a class of the training split");
    }
    index.class_names = classes;
  }
  for (size_t label = 0; label < index.class_names.size(); ++label) {
    const std::string folder = root + "/" + index.class_names[label];
    if (!fs::is_directory(folder)) continue;  // an evaluation split may lack a class
    size_t found = 0;
    for (const auto& name : sorted_entries(folder)) {
      if (!is_image_name(name)) continue;
      // Only regular files: reading a FIFO named like an image would wait forever.
      DPT_CHECK(fs::is_regular_file(folder + "/" + name), DataError, folder, "/", name,
                ": not a regular file (a FIFO, socket, device or broken link); only regular files are read");
      index.paths.push_back(folder + "/" + name);
      index.labels.push_back(static_cast<int64_t>(label));
      ++found;
    }
    DPT_CHECK(found > 0, DataError, folder, ": a class folder without images (*.png, *.jpg, *.jpeg)");
  }
  return index;
}

int64_t image_channels(const std::string& path, int64_t max_pixels) {
  // Grey stays grey (all three decoded channels equal), anything else becomes RGB.
  auto rgb = decode_image(read_file(path), 3, path, max_pixels);
  const bool colour = !torch::equal(rgb.select(2, 0), rgb.select(2, 1)) || !torch::equal(rgb.select(2, 0), rgb.select(2, 2));
  return colour ? 3 : 1;
}

ImageFolderDataset::ImageFolderDataset(ImageFolderIndex index, ImageFolderOptions options)
    : index_(std::move(index)), options_(std::move(options)) {
  DPT_CHECK(!index_.paths.empty(), DataError, "ImageFolderDataset: no images");
  DPT_CHECK(options_.image_size >= 0, InvalidArgumentError, "--image-size must be >= 0, got ", options_.image_size);
  DPT_CHECK(options_.max_pixels > 0, InvalidArgumentError, "--max-image-pixels must be > 0, got ", options_.max_pixels);
  DPT_CHECK(options_.image_size <= options_.max_pixels / std::max<int64_t>(options_.image_size, 1), InvalidArgumentError,
            "--image-size ", options_.image_size, ": ", options_.image_size, " x ", options_.image_size,
            " pixels is more than --max-image-pixels ", options_.max_pixels);
  if (options_.image_size == 0) check_same_size();
  if (options_.channels == 0) options_.channels = image_channels(index_.paths.front(), options_.max_pixels);
  DPT_CHECK(options_.channels == 1 || options_.channels == 3, InvalidArgumentError,
            "ImageFolderOptions::channels must be 1 or 3, got ", options_.channels);
  per_channel(options_.mean, options_.channels, 0.0, "mean");  // validates now, not on a worker
  per_channel(options_.std, options_.channels, 1.0, "std");
}

void ImageFolderDataset::check_same_size() const {
  // Without --image-size the images are stacked as they are: one size for all, known now rather
  // than when the first batch that mixes two sizes is collated.
  ImageHeader first;
  for (size_t i = 0; i < index_.paths.size(); ++i) {
    const std::string& path = index_.paths[i];
    const ImageHeader header = read_image_header(read_file(path), path);
    check_image_header(header, options_.max_pixels, path);
    if (i == 0) first = header;
    DPT_CHECK(header.width == first.width && header.height == first.height, DataError, path, " is ", header.width,
              " x ", header.height, " but ", index_.paths.front(), " is ", first.width, " x ", first.height,
              ": pass --image-size N to resize every image to N x N");
  }
}

Example ImageFolderDataset::get(int64_t i) const {
  DPT_CHECK(i >= 0 && i < size(), InvalidArgumentError, "ImageFolderDataset: index ", i, " out of range [0, ",
            size(), ")");
  const std::string& path = index_.paths[static_cast<size_t>(i)];
  auto pixels = decode_image(read_file(path), options_.channels, path, options_.max_pixels);  // [H, W, C] uint8
  auto image = pixels.permute({2, 0, 1}).to(torch::kFloat32).div_(255.0);
  if (options_.image_size > 0) {
    // torchvision's Resize(size) + CenterCrop(size): shorter side to `size`, then the centre.
    const int64_t h = image.size(1), w = image.size(2), s = options_.image_size;
    const int64_t nh = h <= w ? s : std::max<int64_t>(s, h * s / w);
    const int64_t nw = h <= w ? std::max<int64_t>(s, w * s / h) : s;
    if (nh != h || nw != w) {
      namespace F = torch::nn::functional;
      image = F::interpolate(image.unsqueeze(0), F::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{nh, nw})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false)
                                                     .antialias(true))
                  .squeeze(0);
    }
    image = image.narrow(1, (nh - s) / 2, s).narrow(2, (nw - s) / 2, s);
  }
  auto mean = per_channel(options_.mean, options_.channels, 0.0, "mean");
  auto std = per_channel(options_.std, options_.channels, 1.0, "std");
  image = ((image - mean) / std).contiguous();
  return Example{image, torch::scalar_tensor(index_.labels[static_cast<size_t>(i)], torch::kInt64)};
}

}  // namespace dpt
