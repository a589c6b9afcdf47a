// The only translation unit that includes spdlog (see the note in logging.h on {fmt} versions).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt::log {
namespace {

spdlog::level::level_enum to_spdlog(Level level) { return static_cast<spdlog::level::level_enum>(level); }

std::shared_ptr<spdlog::logger> make_logger(int rank, int world_size, Level level) {
  // Logs go to stderr so that stdout stays clean for results a script may parse.
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("dptrain", sink);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [rank " + std::to_string(rank) + "/" + std::to_string(world_size) +
                      "] [%^%l%$] %v");
  logger->set_level(to_spdlog(level));
  logger->flush_on(spdlog::level::warn);
  return logger;
}

std::shared_ptr<spdlog::logger>& current() {
  // Before init() a process logs as a lone rank 0 at the environment's level.
  static std::shared_ptr<spdlog::logger> logger =
      make_logger(0, 1, parse_level(dpt::env::get_or("DPTRAIN_LOG_LEVEL", "info")));
  return logger;
}

// The status line and the lock that orders it with log lines.
std::mutex status_mutex;
std::string status_text;

void erase_status_locked() {
  if (!status_text.empty()) std::fputs("\r\033[K", stderr);
}

void draw_status_locked() {
  if (!status_text.empty()) std::fputs(status_text.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace

Level parse_level(const std::string& name) {
  static const std::pair<const char*, Level> names[] = {
      {"trace", Level::trace}, {"debug", Level::debug},   {"info", Level::info},         {"warn", Level::warn},
      {"warning", Level::warn}, {"error", Level::error}, {"critical", Level::critical}, {"off", Level::off}};
  for (const auto& [text, level] : names) {
    if (name == text) return level;
  }
  DPT_THROW(InvalidArgumentError, "unknown log level '", name,
            "' (use trace, debug, info, warn, error, critical or off)");
}

void init(int rank, int world_size, const std::string& level_name) {
  std::string name = level_name.empty() ? dpt::env::get_or("DPTRAIN_LOG_LEVEL", "info") : level_name;
  Level level = parse_level(name);
  bool all_ranks = dpt::env::get_flag("DPTRAIN_LOG_ALL_RANKS", false);
  if (rank != 0 && !all_ranks && level < Level::warn) level = Level::warn;
  current() = make_logger(rank, world_size, level);
}

bool enabled(Level level) { return current()->should_log(to_spdlog(level)); }

void write(Level level, const std::string& message) {
  std::lock_guard<std::mutex> lock(status_mutex);
  if (status_text.empty()) {
    current()->log(to_spdlog(level), message);
    return;
  }
  erase_status_locked();
  current()->log(to_spdlog(level), message);
  current()->flush();
  draw_status_locked();
}

namespace {

bool is_terminal_device(const std::string& path) {
  return path.rfind("/dev/pts/", 0) == 0 || path.rfind("/dev/tty", 0) == 0;
}

// Under mpirun a rank's stderr is a pipe to the launcher (and its stdout a pseudo-terminal even
// when nobody watches): what matters is whether the launcher writes to a terminal.
bool launcher_writes_to_terminal() {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE") && !std::getenv("PMIX_RANK")) return false;
  char target[256] = {};
  const std::string link = "/proc/" + std::to_string(::getppid()) + "/fd/2";
  const ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
  return n > 0 && is_terminal_device(std::string(target, static_cast<size_t>(n)));
}

}  // namespace

bool status_line_supported() {
  static const bool supported = [] {
    const char* term = std::getenv("TERM");
    if (term && std::strcmp(term, "dumb") == 0) return false;
    return ::isatty(STDERR_FILENO) == 1 || launcher_writes_to_terminal();
  }();
  return supported;
}

void set_status_line(const std::string& text) {
  if (!status_line_supported()) return;
  std::lock_guard<std::mutex> lock(status_mutex);
  erase_status_locked();
  status_text = text;
  draw_status_locked();
}

void keep_status_line() {
  if (!status_line_supported()) return;
  std::lock_guard<std::mutex> lock(status_mutex);
  if (status_text.empty()) return;
  std::fputs("\n", stderr);
  std::fflush(stderr);
  status_text.clear();
}

void flush() { current()->flush(); }

}  // namespace dpt::log
