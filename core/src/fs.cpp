#include "dptrain/core/fs.h"

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "dptrain/core/error.h"

namespace dpt::fs {

bool exists(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0;
}

bool is_directory(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat info;
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

void create_directories(const std::string& path) {
  if (path.empty() || is_directory(path)) return;
  create_directories(parent_path(path));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    DPT_THROW(IoError, path, ": cannot create directory (", std::strerror(errno), ")");
  }
  DPT_CHECK(is_directory(path), IoError, path, ": exists and is not a directory");
}

void remove_all(const std::string& path) {
  if (!exists(path)) return;
  auto remove_entry = [](const char* entry, const struct stat*, int, struct FTW*) { return ::remove(entry); };
  ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool remove_file(const std::string& path) { return ::unlink(path.c_str()) == 0; }

std::vector<std::string> list_directory(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  DPT_CHECK(dir != nullptr, IoError, path, ": cannot list directory (", std::strerror(errno), ")");
  std::vector<std::string> names;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

std::string parent_path(const std::string& path) {
  auto end = path.find_last_not_of('/');
  if (end == std::string::npos) return path.empty() ? "" : "/";
  auto slash = path.rfind('/', end);
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string file_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::string& directory, const std::string& name) {
  if (directory.empty()) return name;
  return directory.back() == '/' ? directory + name : directory + "/" + name;
}

std::string make_temp_directory(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = join(base && *base ? base : "/tmp", prefix + "-XXXXXX");
  DPT_CHECK(::mkdtemp(pattern.data()) != nullptr, IoError, pattern, ": cannot create temporary directory (",
            std::strerror(errno), ")");
  return pattern;
}

bool parent_is_writable(const std::string& path) {
  std::string parent = parent_path(path);
  if (parent.empty()) parent = ".";
  return is_directory(parent) && ::access(parent.c_str(), W_OK) == 0;
}

bool can_be_created(const std::string& path) {
  std::string existing = path.empty() ? "." : path;
  while (!exists(existing)) {
    existing = parent_path(existing);
    if (existing.empty()) existing = ".";
  }
  return is_directory(existing) && ::access(existing.c_str(), W_OK) == 0;
}

}  // namespace dpt::fs
