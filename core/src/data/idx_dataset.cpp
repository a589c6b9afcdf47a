#include "dptrain/core/data/idx_dataset.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/strings.h"

namespace dpt {
namespace {

constexpr unsigned char kUnsignedByteType = 0x08;
// No IDX file of real data comes near this; a corrupt header must not make us allocate it.
constexpr int64_t kMaxPayloadBytes = int64_t{1} << 34;

struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using GzHandle = std::unique_ptr<gzFile_s, GzCloser>;

// Reads the whole (decompressed) content. zlib reads raw files transparently, so gzip or not is
// decided by the bytes, whatever the name says.
std::vector<unsigned char> read_all(const std::string& path) {
  DPT_CHECK(fs::exists(path), IoError, path, ": no such file");
  // gzopen on a FIFO would wait for a writer forever.
  DPT_CHECK(fs::is_regular_file(path), IoError, path, ": not a regular file (a FIFO, socket or device)");
  GzHandle file(gzopen(path.c_str(), "rb"));
  DPT_CHECK(file != nullptr, IoError, path, ": cannot open: ", std::strerror(errno));
  std::vector<unsigned char> bytes;
  constexpr unsigned kChunk = 1u << 20;
  while (true) {
    const size_t old_size = bytes.size();
    bytes.resize(old_size + kChunk);
    const int got = gzread(file.get(), bytes.data() + old_size, kChunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file.get(), &code);
      DPT_THROW(DataError, path, ": corrupt gzip stream (", message, ")");
    }
    bytes.resize(old_size + static_cast<size_t>(got));
    if (got == 0) break;
    DPT_CHECK(static_cast<int64_t>(bytes.size()) <= kMaxPayloadBytes + 1024, DataError, path,
              ": larger than any IDX file should be (over ", kMaxPayloadBytes, " bytes)");
  }
  int code = Z_OK;
  const char* message = gzerror(file.get(), &code);
  // A gzip stream cut short reads as a short file plus Z_BUF_ERROR ("unexpected end of file").
  DPT_CHECK(code == Z_OK || code == Z_STREAM_END, DataError, path, ": truncated or corrupt gzip stream (", message,
            ")");
  return bytes;
}

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

std::string first_existing(const std::string& directory, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    const std::string path = fs::join(directory, name);
    if (fs::exists(path)) return path;
  }
  DPT_THROW(IoError, "MNIST directory '", directory, "' has none of: ", joined(names));
}

}  // namespace

torch::Tensor read_idx_file(const std::string& path, int expected_dims) {
  DPT_CHECK(expected_dims >= 1 && expected_dims <= 255, InvalidArgumentError,
            "read_idx_file: dimensions must be in [1, 255], got ", expected_dims);
  const std::vector<unsigned char> bytes = read_all(path);
  const uint32_t expected_magic = (uint32_t{kUnsignedByteType} << 8) | uint32_t(expected_dims);
  DPT_CHECK(bytes.size() >= 4, DataError, path, ": truncated: ", bytes.size(),
            " bytes, not even the 4-byte IDX magic number");
  const uint32_t magic = big_endian_u32(bytes.data());
  DPT_CHECK(magic == expected_magic, DataError, path, ": wrong magic number ", hex(magic), " (expected ",
            hex(expected_magic), ", an IDX file of unsigned bytes with ", expected_dims, " dimension",
            expected_dims == 1 ? "" : "s", ")");
  const size_t header_bytes = 4 + 4 * static_cast<size_t>(expected_dims);
  DPT_CHECK(bytes.size() >= header_bytes, DataError, path, ": truncated header: ", bytes.size(),
            " bytes, the header alone is ", header_bytes);
  std::vector<int64_t> shape;
  int64_t payload = 1;
  for (int d = 0; d < expected_dims; ++d) {
    const int64_t extent = big_endian_u32(bytes.data() + 4 + 4 * d);
    shape.push_back(extent);
    payload *= extent;
    DPT_CHECK(payload <= kMaxPayloadBytes, DataError, path, ": header dimensions are implausibly large");
  }
  const int64_t actual = static_cast<int64_t>(bytes.size() - header_bytes);
  DPT_CHECK(actual >= payload, DataError, path, ": truncated: the header promises ", payload,
            " data bytes but the file has ", actual);
  DPT_CHECK(actual == payload, DataError, path, ": ", actual - payload,
            " unexpected bytes after the data the header describes");
  torch::Tensor out = torch::empty(shape, torch::kUInt8);
  if (payload > 0) std::memcpy(out.data_ptr<uint8_t>(), bytes.data() + header_bytes, payload);
  return out;
}

namespace {

TensorDataset load_pair(const std::string& images_path, const std::string& labels_path) {
  torch::Tensor images = read_idx_file(images_path, 3);
  torch::Tensor labels = read_idx_file(labels_path, 1);
  DPT_CHECK(images.size(0) == labels.size(0), DataError, images_path, " holds ", images.size(0), " images but ",
            labels_path, " holds ", labels.size(0), " labels");
  return TensorDataset(images.unsqueeze(1).to(torch::kFloat32).div_(255.0), labels.to(torch::kInt64));
}

}  // namespace

IdxDataset::IdxDataset(const std::string& images_path, const std::string& labels_path)
    : TensorDataset(load_pair(images_path, labels_path)) {}

IdxDataset load_mnist(const std::string& directory, const std::string& split) {
  std::string prefix;
  if (split == "train") {
    prefix = "train";
  } else if (split == "test" || split == "t10k") {
    prefix = "t10k";
  } else {
    DPT_THROW(InvalidArgumentError, "MNIST split must be 'train' or 'test', got '", split, "'");
  }
  DPT_CHECK(fs::is_directory(directory), IoError, "MNIST directory '", directory, "' does not exist");
  auto candidates = [&](const std::string& kind) {
    const std::string base = prefix + "-" + kind + "-ubyte";
    const std::string dotted = prefix + "-" + kind.substr(0, kind.find('-')) + "." + kind.substr(kind.find('-') + 1) +
                               "-ubyte";  // train-images.idx3-ubyte
    return std::vector<std::string>{base + ".gz", base, dotted + ".gz", dotted};
  };
  const std::string images = first_existing(directory, candidates("images-idx3"));
  const std::string labels = first_existing(directory, candidates("labels-idx1"));
  return IdxDataset(images, labels);
}

}  // namespace dpt
