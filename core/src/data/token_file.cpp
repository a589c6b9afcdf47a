#include "dptrain/core/data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"

namespace dpt {
namespace {

int element_size_of(const std::string& dtype) { return dtype == "uint16" ? 2 : 4; }

}  // namespace

TokenFileMeta read_token_meta(const std::string& directory) {
  TokenFileMeta meta;
  const std::string path = fs::join(directory, "meta.json");
  if (!fs::exists(path)) return meta;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    DPT_THROW(DataError, path, ": not JSON (", e.what(), ")");
  }
  DPT_CHECK(json.is_object(), DataError, path, ": expected an object such as {\"dtype\": \"uint16\", \"vocab_size\": 50304}");
  if (json.contains("dtype")) {
    DPT_CHECK(json["dtype"].is_string(), DataError, path, ": \"dtype\" must be a string");
    meta.dtype = json["dtype"].get<std::string>();
    DPT_CHECK(meta.dtype == "uint16" || meta.dtype == "uint32" || meta.dtype == "int32", DataError, path, ": dtype \"",
              meta.dtype, "\" is not uint16, uint32 or int32");
  }
  if (json.contains("vocab_size")) {
    DPT_CHECK(json["vocab_size"].is_number_integer() && json["vocab_size"].get<int64_t>() > 0, DataError, path,
              ": \"vocab_size\" must be a positive integer");
    meta.vocab_size = json["vocab_size"].get<int64_t>();
  }
  return meta;
}

TokenWindows::TokenWindows(std::string path, int64_t context, TokenFileMeta meta)
    : path_(std::move(path)), context_(context), meta_(std::move(meta)), element_size_(element_size_of(meta_.dtype)) {
  DPT_CHECK(context_ >= 1, InvalidArgumentError, "--context must be >= 1, got ", context_);
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  DPT_CHECK(fd >= 0, IoError, path_, ": cannot open (", std::strerror(errno), ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    DPT_THROW(DataError, path_, ": not a regular file");
  }
  bytes_ = static_cast<size_t>(info.st_size);
  if (bytes_ % static_cast<size_t>(element_size_) != 0) {
    ::close(fd);
    DPT_THROW(DataError, path_, ": ", bytes_, " bytes is not a whole number of ", meta_.dtype, " tokens (",
              element_size_, " bytes each); a truncated file, or meta.json's dtype is wrong");
  }
  tokens_ = static_cast<int64_t>(bytes_ / static_cast<size_t>(element_size_));
  windows_ = tokens_ > 0 ? (tokens_ - 1) / context_ : 0;
  if (windows_ == 0) {
    ::close(fd);
    DPT_THROW(DataError, path_, ": ", tokens_, " tokens, fewer than one window of --context ", context_,
              " + 1 (the next-token targets)");
  }
  void* map = ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file
  DPT_CHECK(map != MAP_FAILED, IoError, path_, ": cannot map (", std::strerror(errno), ")");
  ::madvise(map, bytes_, MADV_RANDOM);  // windows come in a permuted order: no read-ahead
  map_ = static_cast<const unsigned char*>(map);
}

TokenWindows::~TokenWindows() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), bytes_);
}

int64_t TokenWindows::token_at(int64_t position) const {
  const unsigned char* at = map_ + position * element_size_;
  if (meta_.dtype == "uint16") {
    uint16_t v;
    std::memcpy(&v, at, 2);
    return v;
  }
  if (meta_.dtype == "uint32") {
    uint32_t v;
    std::memcpy(&v, at, 4);
    return v;
  }
  int32_t v;
  std::memcpy(&v, at, 4);
  return v;
}

Example TokenWindows::get(int64_t index) const {
  DPT_CHECK(index >= 0 && index < windows_, InvalidArgumentError, path_, ": window ", index, " out of [0, ", windows_,
            ")");
  const int64_t start = index * context_;
  auto window = torch::empty({context_ + 1}, torch::kInt64);
  int64_t* out = window.data_ptr<int64_t>();
  for (int64_t i = 0; i <= context_; ++i) {
    const int64_t token = token_at(start + i);
    DPT_CHECK(token >= 0 && (!meta_.vocab_size || token < *meta_.vocab_size), DataError, path_, ": token id ", token,
              " at position ", start + i, " is outside [0, ", meta_.vocab_size ? *meta_.vocab_size : 0,
              ") (meta.json's vocab_size)");
    out[i] = token;
  }
  release(start, context_ + 1);
  return {Tensors(window.narrow(0, 0, context_)), Tensors(window.narrow(0, 1, context_))};
}

void TokenWindows::release(int64_t first_token, int64_t count) const {
  // Unmap every page the read can have mapped: the edge pages shared with neighbouring windows (a
  // window of 257 uint16 tokens is smaller than a page, so none lies wholly inside it) and the cached
  // pages Linux maps with each fault (fault-around, and since 6.x the whole large folio the page
  // cache holds the page in: up to 2 MiB; MADV_RANDOM does not stop either). Measured on 6.18: 64 KiB
  // left ~1 MiB per rank resident, 2 MiB leaves none. The file is mapped read-only and shared, so a
  // page dropped here stays in the page cache and a later read of it (the next epoch, a worker thread
  // reading the neighbouring window) maps it again. Without this a rank's resident memory grows with
  // the windows it reads.
  constexpr size_t kMappedPerFault = size_t{2} << 20;
  const size_t begin = static_cast<size_t>(first_token * element_size_) / kMappedPerFault * kMappedPerFault;
  const size_t last = static_cast<size_t>((first_token + count) * element_size_);
  const size_t end = std::min(bytes_, (last + kMappedPerFault - 1) / kMappedPerFault * kMappedPerFault);
  if (end > begin) ::madvise(const_cast<unsigned char*>(map_) + begin, end - begin, MADV_DONTNEED);
}

int64_t TokenWindows::vocab_size() const {
  if (meta_.vocab_size) return *meta_.vocab_size;
  if (!scanned_vocab_) {
    // meta.json names no vocab_size: the whole file is read once, a chunk at a time, each chunk released
    // after it (the scan must not leave the corpus resident).
    constexpr int64_t kChunk = int64_t{1} << 22;
    int64_t largest = 0;
    for (int64_t chunk = 0; chunk < tokens_; chunk += kChunk) {
      const int64_t end = std::min(tokens_, chunk + kChunk);
      for (int64_t i = chunk; i < end; ++i) largest = std::max(largest, token_at(i));
      release(chunk, end - chunk);
    }
    scanned_vocab_ = largest + 1;
  }
  return *scanned_vocab_;
}

}  // namespace dpt
