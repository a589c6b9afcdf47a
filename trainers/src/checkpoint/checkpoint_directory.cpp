// The checkpoint files of a directory: naming, writing with the last-K policy, and choosing the
// newest intact one to resume from.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/stale_files.h"
#include "dptrain/trainers/checkpoint/checkpoint.h"

namespace dpt {
namespace {

const char* kPrefix = "checkpoint-";
const char* kSuffix = ".pt";
const char* kSuffixV1 = ".dpt";  // dptrain's first format, still resumed from
const char* kLast = "last.pt";
const char* kBest = "best.pt";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool parse_step(const std::string& name, int64_t& step) {
  const size_t prefix = std::strlen(kPrefix);
  const size_t suffix = ends_with(name, kSuffix) ? std::strlen(kSuffix) : ends_with(name, kSuffixV1) ? std::strlen(kSuffixV1) : 0;
  if (suffix == 0 || name.size() <= prefix + suffix || name.compare(0, prefix, kPrefix) != 0) return false;
  std::string digits = name.substr(prefix, name.size() - prefix - suffix);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return false;
  step = std::stoll(digits);
  return true;
}

// Makes `alias` name the same file as `written` (whose contents are `bytes`), replacing it
// atomically: a hard link costs no space and no time; a file system without links gets a copy.
void alias_atomically(const std::string& written, const std::string& alias, const Bytes& bytes) {
  const std::string temporary = alias + ".tmp." + std::to_string(::getpid());
  ::unlink(temporary.c_str());
  if (::link(written.c_str(), temporary.c_str()) == 0) {
    if (std::rename(temporary.c_str(), alias.c_str()) == 0) return;
    ::unlink(temporary.c_str());
  }
  write_file_atomic(alias, bytes);
}

}  // namespace

CheckpointDirectory::CheckpointDirectory(std::string directory, int keep_last)
    : directory_(std::move(directory)), keep_last_(keep_last) {
  DPT_CHECK(!directory_.empty(), InvalidArgumentError, "--checkpoint-dir must not be empty");
  DPT_CHECK(keep_last_ >= 1, InvalidArgumentError, "--keep-checkpoints must be >= 1, got ", keep_last_);
}

void CheckpointDirectory::prepare() const {
  try {
    fs::create_directories(directory_);
  } catch (const Error& e) {
    DPT_THROW(InvalidArgumentError, "--checkpoint-dir ", directory_, " cannot be created: ", e.what());
  }
  DPT_CHECK(fs::parent_is_writable(fs::join(directory_, "probe")), InvalidArgumentError, "--checkpoint-dir ",
            directory_, " is not writable");
  // A run killed while writing a checkpoint leaves checkpoint-<step>.pt.tmp.<pid>; that step may
  // never be written again, so the directory is cleaned as a whole.
  for (const char* prefix : {kPrefix, kLast, kBest}) remove_stale_temporaries(directory_, prefix);
}

std::string CheckpointDirectory::last_path() const { return fs::join(directory_, kLast); }
std::string CheckpointDirectory::best_path() const { return fs::join(directory_, kBest); }

std::string CheckpointDirectory::path_for_step(int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%010lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return fs::join(directory_, name);
}

std::string CheckpointDirectory::write(const Checkpoint& checkpoint, bool best) const {
  std::string path = path_for_step(checkpoint.step);
  const Bytes bytes = encode_checkpoint(checkpoint);
  write_file_atomic(path, bytes);
  alias_atomically(path, last_path(), bytes);
  if (best) alias_atomically(path, best_path(), bytes);
  auto files = list();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < files.size(); ++i) fs::remove_file(files[i]);
  return path;
}

std::string CheckpointDirectory::write_best(const Checkpoint& checkpoint) const {
  write_file_atomic(best_path(), encode_checkpoint(checkpoint));
  return best_path();
}

std::vector<std::string> CheckpointDirectory::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(directory_)) return {};
  for (const auto& name : fs::list_directory(directory_)) {
    int64_t step = 0;
    // A .pt and a .dpt of the same step (a rerun after upgrading): the .pt sorts last, is newer.
    if (parse_step(name, step)) found.emplace_back(step, fs::join(directory_, name));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : ends_with(a.second, kSuffixV1) && !ends_with(b.second, kSuffixV1);
  });
  std::vector<std::string> paths;
  for (auto& entry : found) paths.push_back(entry.second);
  return paths;
}

std::optional<std::string> CheckpointDirectory::latest() const {
  auto files = list();
  if (files.empty()) return std::nullopt;
  return files.back();
}

Bytes read_checkpoint_file(const std::string& path, const std::string& directory, std::string& chosen) {
  if (!path.empty() && path != "latest") {
    Bytes bytes = read_file(path);
    verify_checkpoint(bytes, path);
    chosen = path;
    return bytes;
  }
  DPT_CHECK(!directory.empty(), InvalidArgumentError,
            "--resume without a file needs --checkpoint-dir to look for the latest checkpoint");
  auto files = CheckpointDirectory(directory).list();
  DPT_CHECK(!files.empty(), InvalidArgumentError, "--resume: no checkpoint-*.pt files in ", directory);
  std::string first_error;
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      Bytes bytes = read_file(*it);
      verify_checkpoint(bytes, *it);
      if (!first_error.empty()) DPT_LOG_WARN("resuming from the previous intact checkpoint {}", *it);
      chosen = *it;
      return bytes;
    } catch (const Error& e) {
      DPT_LOG_WARN("{}", e.what());
      if (first_error.empty()) first_error = e.what();
    }
  }
  DPT_THROW(DataError, "--resume: no intact checkpoint in ", directory, " (newest: ", first_error, ")");
}

}  // namespace dpt
