#include "dptrain/core/directory_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

constexpr int64_t kRetryMs = 100;

std::string read_all(int fd) {
  std::string text;
  char buffer[256];
  if (::lseek(fd, 0, SEEK_SET) != 0) return text;
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0 && text.size() < 4096) text.append(buffer, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string holder_text() {
  const std::time_t now = std::time(nullptr);
  char when[64] = {};
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  return "pid " + std::to_string(::getpid()) + " on " + env::host_name() + " since " + when;
}

}  // namespace

DirectoryLock::DirectoryLock(const std::string& directory, const std::string& flag, std::chrono::milliseconds wait)
    : path_(fs::join(directory, ".dptrain.lock")) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  DPT_CHECK(fd_ >= 0, IoError, flag, " ", directory, ": cannot create the lock file ", path_, " (",
            std::strerror(errno), ")");
  const int64_t attempts = 1 + wait.count() / kRetryMs;
  int error = 0;
  for (int64_t attempt = 0; attempt < attempts; ++attempt) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
      error = 0;
      break;
    }
    error = errno;
    if (error != EWOULDBLOCK) break;
    if (attempt + 1 == attempts) break;
    if (attempt == 0) DPT_LOG_DEBUG("{} is locked; waiting up to {} ms for its holder to end", path_, wait.count());
    ::usleep(static_cast<useconds_t>(kRetryMs * 1000));
  }
  if (error != 0) {
    const int saved = error;
    const std::string holder = read_all(fd_);
    ::close(fd_);
    fd_ = -1;
    DPT_CHECK(saved != EWOULDBLOCK, InvalidArgumentError, flag, " ", directory, " is in use by another job (",
              holder.empty() ? std::string("holder unknown") : holder,
              "): two jobs would overwrite each other's checkpoints; give this one its own directory");
    DPT_THROW(IoError, flag, " ", directory, ": cannot lock ", path_, " (", std::strerror(saved), ")");
  }
  const std::string previous = read_all(fd_);
  if (!previous.empty()) DPT_LOG_DEBUG("{}: taking over the lock of a job that has ended ({})", path_, previous);
  const std::string mine = holder_text() + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, mine.data(), mine.size(), 0) != static_cast<ssize_t>(mine.size())) {
    DPT_LOG_WARN("{}: could not record this job in the lock file ({})", path_, std::strerror(errno));
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ < 0) return;
  // Emptied, not removed: removing would race with a job that has just opened the file to lock it.
  if (::ftruncate(fd_, 0) != 0) {}
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

}  // namespace dpt
