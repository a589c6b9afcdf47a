// Image folders in torchvision's ImageFolder layout, decoded on demand:
//
//   DIR/train/<class>/*.png|*.jpg|*.jpeg     the training split; classes sorted by name
//   DIR/test/<class>/...  (or DIR/val/)      the evaluation split, with the training split's classes
//
//   dpt::ImageFolderOptions options;
//   options.image_size = 32;                  // shorter side resized to 32, then centre-cropped
//   options.mean = {0.5}; options.std = {0.25};
//   dpt::ImageFolderDataset train(dpt::scan_image_folder("data", "train"), options);
//   dpt::Example e = train.get(0);            // decodes the file: float32 [C, 32, 32], label int64
//
// get() decodes with libpng or libjpeg(-turbo) (by content, not by extension), so it is the work
// the preprocessing pool parallelises: the Trainer calls it on the pool's workers. The channel
// count is the first training image's (grey or RGB); other images are converted to it, alpha is
// dropped. Every problem is one DataError naming the file or folder (a truncated or corrupt image,
// a class folder without images, a test class the training split lacks, a file that is not a
// regular file, an image over the pixel limit, a CMYK JPEG). Without image_size the headers of
// all images are read when the dataset is made, so images of different sizes are an error then,
// not in the middle of an epoch.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/serialize.h"

namespace dpt {

constexpr int64_t kDefaultMaxImagePixels = 178956970;

struct ImageFolderIndex {
  std::vector<std::string> class_names;  // sorted; label i is class_names[i]
  std::vector<std::string> paths;
  std::vector<int64_t> labels;
};

// The images of DIR/<split>/<class>/. `classes`: the training split's class names when scanning
// an evaluation split (its folders must be among them); empty: the split's own folders.
ImageFolderIndex scan_image_folder(const std::string& directory, const std::string& split,
                                   const std::vector<std::string>& classes = {});

struct ImageFolderOptions {
  int64_t image_size = 0;       // 0: keep the decoded size (every image must then have the same)
  std::vector<double> mean;     // per channel, or one value for all; empty: 0
  std::vector<double> std;      // per channel, or one value for all; empty: 1
  int64_t channels = 0;         // 1 or 3; 0: the first image's
  // Images of more pixels are refused before decoding (a small file can decode to gigabytes: a
  // "decompression bomb"). PIL's DecompressionBombError limit.
  int64_t max_pixels = kDefaultMaxImagePixels;
};

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(ImageFolderIndex index, ImageFolderOptions options);
  int64_t size() const override { return static_cast<int64_t>(index_.paths.size()); }
  Example get(int64_t index) const override;

  const std::vector<std::string>& class_names() const { return index_.class_names; }
  int64_t channels() const { return options_.channels; }
  const ImageFolderOptions& options() const { return options_; }
  const ImageFolderIndex& index() const { return index_; }

 private:
  void check_same_size() const;  // every image's header against the first (image_size == 0)

  ImageFolderIndex index_;
  ImageFolderOptions options_;
};

// The channels a dataset of images like `path` takes when ImageFolderOptions::channels is 0: 1 for
// a grey image, 3 otherwise.
int64_t image_channels(const std::string& path, int64_t max_pixels = kDefaultMaxImagePixels);

// What an image's header says, read without decoding its pixels.
struct ImageHeader {
  int64_t width = 0;
  int64_t height = 0;
  bool cmyk = false;  // a CMYK (print) JPEG, which dptrain does not convert
};
// The header of PNG or JPEG bytes; DataError naming `origin` when they are neither.
ImageHeader read_image_header(const Bytes& bytes, const std::string& origin);
// DataError naming `origin` for an image of more than `max_pixels` pixels or a CMYK JPEG.
void check_image_header(const ImageHeader& header, int64_t max_pixels, const std::string& origin);

// Decodes PNG or JPEG bytes to uint8 [H, W, channels] (1: grey, 3: RGB). `origin` names the file
// in errors. The header is checked first: more than `max_pixels` pixels, or a CMYK JPEG, is a
// DataError before any pixel is decoded.
torch::Tensor decode_image(const Bytes& bytes, int64_t channels, const std::string& origin,
                           int64_t max_pixels = kDefaultMaxImagePixels);

}  // namespace dpt
