// MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST), gzip-compressed or raw.
//
//   dpt::IdxDataset train = dpt::load_mnist("/usr/share/datasets/fashion-mnist", "train");
//   train.inputs();   // float32 [60000, 1, 28, 28] in [0, 1]
//   train.targets();  // int64 [60000]
//
// Every problem is one error naming the file: IoError when a directory or file is missing or
// unreadable; DataError when the content is wrong (bad magic number, truncated or overlong data,
// corrupt gzip stream, image and label counts that disagree).
#pragma once

#include <torch/torch.h>

#include <string>

#include "dptrain/core/data/tensor_dataset.h"

namespace dpt {

// Reads one IDX file of unsigned bytes (type code 0x08) with `expected_dims` dimensions, e.g.
// 3 for images (magic 0x00000803) and 1 for labels (0x00000801). Returns a uint8 tensor shaped as
// the header says. gzip is detected by content, not by the file name.
torch::Tensor read_idx_file(const std::string& path, int expected_dims);

class IdxDataset : public TensorDataset {
 public:
  // Images [N,H,W] become float32 [N,1,H,W] scaled to [0,1]; labels become int64 [N].
  IdxDataset(const std::string& images_path, const std::string& labels_path);
};

// The MNIST file layout: split "train" reads train-{images-idx3,labels-idx1}-ubyte[.gz],
// split "test" (or "t10k") reads t10k-...; the .gz file is preferred when both exist.
IdxDataset load_mnist(const std::string& directory, const std::string& split);

}  // namespace dpt
