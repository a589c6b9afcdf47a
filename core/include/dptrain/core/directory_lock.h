// An exclusive lock on a directory for as long as this object lives: `<dir>/.dptrain.lock`, held
// with flock(2), so two jobs cannot write into one --checkpoint-dir at once. The kernel releases
// the lock when its process dies (killed, crashed), so a lock file left behind by a dead job is
// no lock: the next job takes it (and says whose it was). The file holds the holder's pid, host and
// start time, which the refused job names.
#pragma once

#include <chrono>
#include <string>

namespace dpt {

class DirectoryLock {
 public:
  // InvalidArgumentError naming `flag`, the directory and the holder when another process still
  // holds it after `wait` (a job restarted by its supervisor can start while a rank of the run
  // before is still exiting); IoError when the lock file cannot be created.
  DirectoryLock(const std::string& directory, const std::string& flag,
                std::chrono::milliseconds wait = std::chrono::seconds(5));
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace dpt
