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
  // Hand the pages wholly inside this window back: the next epoch reads them again from the page
  // cache, and this rank's resident memory does not grow with the corpus.
  static const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t first = (static_cast<size_t>(start * element_size_) + page - 1) / page * page;
  const size_t last = static_cast<size_t>((start + context_ + 1) * element_size_) / page * page;
  if (last > first) ::madvise(const_cast<unsigned char*>(map_) + first, last - first, MADV_DONTNEED);
  return {Tensors(window.narrow(0, 0, context_)), Tensors(window.narrow(0, 1, context_))};
}

int64_t TokenWindows::vocab_size() const {
  if (meta_.vocab_size) return *meta_.vocab_size;
  if (!scanned_vocab_) {
    int64_t largest = 0;
    for (int64_t i = 0; i < tokens_; ++i) largest = std::max(largest, token_at(i));
    scanned_vocab_ = largest + 1;
  }
  return *scanned_vocab_;
}

}  // namespace dpt
