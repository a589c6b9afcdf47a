// IDX reader: round trips through files written here, and one clear error per kind of corruption.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "dptrain/core/data/idx_dataset.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "test_support.h"

namespace {

using Bytes = std::vector<unsigned char>;

void put_u32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<unsigned char>(v >> shift));
}

// An IDX file of unsigned bytes: magic 0x0000 08 <ndims>, big-endian dims, then the data.
Bytes idx_bytes(const std::vector<uint32_t>& dims, const Bytes& data) {
  Bytes out;
  put_u32(out, 0x0800u | static_cast<uint32_t>(dims.size()));
  for (uint32_t d : dims) put_u32(out, d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_raw(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

uint32_t crc32(const Bytes& bytes) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put_u32_le(Bytes& out, uint32_t v) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<unsigned char>(v >> shift));
}

// A valid gzip file with "stored" (uncompressed) deflate blocks: no zlib needed in the test.
Bytes gzip_stored(const Bytes& data) {
  Bytes out{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
  size_t offset = 0;
  do {
    const size_t length = std::min<size_t>(65535, data.size() - offset);
    const bool last = offset + length == data.size();
    out.push_back(last ? 1 : 0);
    out.push_back(static_cast<unsigned char>(length));
    out.push_back(static_cast<unsigned char>(length >> 8));
    out.push_back(static_cast<unsigned char>(~length));
    out.push_back(static_cast<unsigned char>(~length >> 8));
    out.insert(out.end(), data.begin() + offset, data.begin() + offset + length);
    offset += length;
  } while (offset < data.size());
  put_u32_le(out, crc32(data));
  put_u32_le(out, static_cast<uint32_t>(data.size()));
  return out;
}

void write_gz(const std::string& path, const Bytes& bytes) {
  write_raw(path, gzip_stored(bytes));
}

Bytes image_data(int n, int h, int w) {
  Bytes data;
  for (int i = 0; i < n * h * w; ++i) data.push_back(static_cast<unsigned char>((i * 37) % 256));
  return data;
}

// Writes an MNIST-style pair of n images (h x w) and labels into dir, gzip or raw.
void write_split(const std::string& dir, const std::string& prefix, int n, int h, int w, bool gz) {
  Bytes labels;
  for (int i = 0; i < n; ++i) labels.push_back(static_cast<unsigned char>(i % 10));
  const std::string suffix = gz ? ".gz" : "";
  auto write = gz ? write_gz : write_raw;
  write(dir + "/" + prefix + "-images-idx3-ubyte" + suffix,
        idx_bytes({uint32_t(n), uint32_t(h), uint32_t(w)}, image_data(n, h, w)));
  write(dir + "/" + prefix + "-labels-idx1-ubyte" + suffix, idx_bytes({uint32_t(n)}, labels));
}

// Runs fn, expects ErrorType, and that the message names `file`.
template <typename ErrorType, typename Fn>
void expect_error_naming(Fn fn, const std::string& file) {
  try {
    fn();
    FAIL() << "no error; expected one naming " << file;
  } catch (const ErrorType& e) {
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(DataIdx, RawAndGzipReadTheSameScaledTensors) {
  dpt::testing::TempDir raw_dir, gz_dir;
  write_split(raw_dir.path(), "train", 5, 3, 4, /*gz=*/false);
  write_split(gz_dir.path(), "train", 5, 3, 4, /*gz=*/true);
  const dpt::IdxDataset raw = dpt::load_mnist(raw_dir.path(), "train");
  const dpt::IdxDataset gz = dpt::load_mnist(gz_dir.path(), "train");

  ASSERT_EQ(raw.inputs().tensor().sizes(), torch::IntArrayRef({5, 1, 3, 4}));
  EXPECT_EQ(raw.inputs().tensor().scalar_type(), torch::kFloat32);
  EXPECT_EQ(raw.targets().tensor().scalar_type(), torch::kInt64);
  const Bytes data = image_data(5, 3, 4);
  const auto flat = raw.inputs().tensor().flatten();
  for (size_t i = 0; i < data.size(); ++i) EXPECT_FLOAT_EQ(flat[int64_t(i)].item<float>(), data[i] / 255.0f);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(raw.targets().tensor()[i].item<int64_t>(), i % 10);
  EXPECT_TRUE(torch::equal(raw.inputs().tensor(), gz.inputs().tensor()));
  EXPECT_TRUE(torch::equal(raw.targets().tensor(), gz.targets().tensor()));
  EXPECT_EQ(raw.size(), 5);
}

TEST(DataIdx, TestSplitReadsT10kFiles) {
  dpt::testing::TempDir dir;
  write_split(dir.path(), "t10k", 2, 2, 2, true);
  EXPECT_EQ(dpt::load_mnist(dir.path(), "test").size(), 2);
  EXPECT_THROW(dpt::load_mnist(dir.path(), "validation"), dpt::InvalidArgumentError);
}

TEST(DataIdx, TruncatedRawFileNamesTheFile) {
  dpt::testing::TempDir dir;
  const std::string path = dir.file("train-images-idx3-ubyte");
  Bytes bytes = idx_bytes({4, 2, 2}, image_data(4, 2, 2));
  bytes.resize(bytes.size() - 3);
  write_raw(path, bytes);
  expect_error_naming<dpt::DataError>([&] { dpt::read_idx_file(path, 3); }, path);
  // Cut inside the header.
  write_raw(path, Bytes(bytes.begin(), bytes.begin() + 9));
  expect_error_naming<dpt::DataError>([&] { dpt::read_idx_file(path, 3); }, path);
}

TEST(DataIdx, TruncatedGzipStreamNamesTheFile) {
  dpt::testing::TempDir dir;
  const Bytes compressed = gzip_stored(idx_bytes({50, 8, 8}, image_data(50, 8, 8)));
  const std::string cut = dir.file("train-images-idx3-ubyte.gz");
  write_raw(cut, Bytes(compressed.begin(), compressed.begin() + compressed.size() / 2));
  expect_error_naming<dpt::DataError>([&] { dpt::read_idx_file(cut, 3); }, cut);
}

TEST(DataIdx, WrongMagicNamesTheFile) {
  dpt::testing::TempDir dir;
  const std::string path = dir.file("train-labels-idx1-ubyte");
  write_raw(path, idx_bytes({4, 2, 2}, image_data(4, 2, 2)));  // an image file where labels belong
  expect_error_naming<dpt::DataError>([&] { dpt::read_idx_file(path, 1); }, path);
  write_raw(path, Bytes{'P', 'K', 3, 4, 0, 0, 0, 0, 1});
  expect_error_naming<dpt::DataError>([&] { dpt::read_idx_file(path, 1); }, path);
}

TEST(DataIdx, TrailingBytesAreAnError) {
  dpt::testing::TempDir dir;
  const std::string path = dir.file("labels");
  Bytes bytes = idx_bytes({3}, Bytes{1, 2, 3});
  bytes.push_back(9);
  write_raw(path, bytes);
  expect_error_naming<dpt::DataError>([&] { dpt::read_idx_file(path, 1); }, path);
}

TEST(DataIdx, ImageAndLabelCountMismatchNamesBothFiles) {
  dpt::testing::TempDir dir;
  write_split(dir.path(), "train", 6, 2, 2, true);
  const std::string labels = dir.file("train-labels-idx1-ubyte.gz");
  write_gz(labels, idx_bytes({5}, Bytes{0, 1, 2, 3, 4}));
  expect_error_naming<dpt::DataError>([&] { dpt::load_mnist(dir.path(), "train"); }, labels);
  expect_error_naming<dpt::DataError>([&] { dpt::load_mnist(dir.path(), "train"); },
                                      dir.file("train-images-idx3-ubyte.gz"));
}

TEST(DataIdx, MissingDirectoryAndFilesAreIoErrors) {
  dpt::testing::TempDir dir;
  const std::string missing_dir = dir.file("nope");
  expect_error_naming<dpt::IoError>([&] { dpt::load_mnist(missing_dir, "train"); }, missing_dir);
  // Images present, labels missing: the error names the directory and the expected label file.
  write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_bytes({1, 2, 2}, image_data(1, 2, 2)));
  expect_error_naming<dpt::IoError>([&] { dpt::load_mnist(dir.path(), "train"); }, "train-labels-idx1-ubyte");
  expect_error_naming<dpt::IoError>([&] { dpt::read_idx_file(dir.file("absent"), 1); }, dir.file("absent"));
}

TEST(DataIdx, ReadsRealFashionMnistWhenInstalled) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!dpt::fs::is_directory(dir)) GTEST_SKIP() << dir << " not installed";
  const dpt::IdxDataset test = dpt::load_mnist(dir, "test");
  ASSERT_EQ(test.inputs().tensor().sizes(), torch::IntArrayRef({10000, 1, 28, 28}));
  EXPECT_EQ(test.targets().tensor().min().item<int64_t>(), 0);
  EXPECT_EQ(test.targets().tensor().max().item<int64_t>(), 9);
  EXPECT_GE(test.inputs().tensor().min().item<float>(), 0.0f);
  EXPECT_LE(test.inputs().tensor().max().item<float>(), 1.0f);
  // Fashion-MNIST's test split is balanced: 1000 of each class.
  EXPECT_TRUE(torch::equal(torch::bincount(test.targets().tensor()), torch::full({10}, 1000, torch::kInt64)));
}
