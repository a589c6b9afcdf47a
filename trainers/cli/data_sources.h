// What `--data DIR` holds, detected from its contents, and the datasets / training source made from
// it (private to the dptrain command):
//
//   IDX files          DIR/train-images-idx3-ubyte[.gz], ... (MNIST layout)
//   tensor file        DIR/train.pt = torch.save({"inputs": X, "targets": Y}); DIR/test.pt or val.pt
//   tensor shards      DIR/train-00000.pt, train-00001.pt, ... (+ DIR/shards.json); test as above
//                      or as test-00000.pt, ... shards (read whole for evaluation)
//   image folder       DIR/train/<class>/*.png|jpg, DIR/test/<class>/... or DIR/val/<class>/...
//   token files        DIR/train.bin, DIR/val.bin (or test.bin), DIR/meta.json: windows of --context
//                      tokens, memory-mapped (core/data/token_file.h)
//
// A directory matching none is one error naming what was looked for.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/data/image_folder.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/trainers/data/train_source.h"

namespace dpt::cli {

enum class DataKind { Idx, TensorFile, TensorShards, ImageFolder, TokenFile };

struct DataOptions {
  std::string directory;
  int64_t limit_samples = 0;  // 0: all
  ImageFolderOptions images;   // --image-size, --mean, --std
  int64_t context = 256;       // token files: tokens per window (--context)
};

DataKind detect_data(const std::string& directory);
const char* describe(DataKind kind);

// A whole split ("train" or "test"; "test" falls back to "val") as one Dataset: in memory, or
// decoded on demand for image folders. Tensor shards of a test split are read whole.
std::shared_ptr<Dataset> open_split(const DataOptions& options, const std::string& split,
                                    const CommunicatorPtr& world);

// The training split as fit() takes it: shards stream (every rank reading only its own); the
// other kinds are an IndexedSource over open_split("train").
std::unique_ptr<TrainSource> open_train_source(const DataOptions& options, SourceOptions source,
                                               const CommunicatorPtr& world);

// Which file each sample of open_split(options, split) is, relative to the data directory, in the
// split's order: image folders only (empty for the other kinds, whose samples are rows).
std::vector<std::string> sample_files(const DataOptions& options, const std::string& split);

// The class names of an image folder's training split (empty for the other kinds).
std::vector<std::string> class_names(const DataOptions& options);

}  // namespace dpt::cli
