// The only translation unit that includes spdlog (see the note in logging.h on {fmt} versions).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

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

void write(Level level, const std::string& message) { current()->log(to_spdlog(level), message); }

void flush() { current()->flush(); }

}  // namespace dpt::log
