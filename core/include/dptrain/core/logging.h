// Logging for every dptrain program: spdlog underneath, each line tagged with the rank.
//
//   [2026-11-23 10:00:00.123] [rank 1/4] [info] epoch 1: loss 0.4123
//
// By default rank 0 logs at info and the other ranks only warnings and errors, so a 64-rank job
// prints one story, not 64. The level comes from --log-level or DPTRAIN_LOG_LEVEL
// (trace, debug, info, warn, error, critical, off); DPTRAIN_LOG_ALL_RANKS=1 lets every rank log at it.
//
// Why spdlog is not in this header: libtorch ships its own {fmt} (12.x) ahead of the system's
// (9.x, which Debian's spdlog is built against) on the include path. spdlog therefore lives in one
// translation unit that never sees libtorch's headers (src/logging_spdlog.cpp); messages are
// formatted here with whichever {fmt} the including file sees (their inline namespaces differ, so
// the two never collide) and handed over as plain strings.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <string>
#include <utility>

namespace dpt::log {

enum class Level { trace = 0, debug, info, warn, error, critical, off };

// (Re)configures the logger for this rank. `level` empty means DPTRAIN_LOG_LEVEL or "info".
void init(int rank, int world_size, const std::string& level = "");
// Parses a level name; throws InvalidArgumentError naming the accepted values.
Level parse_level(const std::string& name);
bool enabled(Level level);
void write(Level level, const std::string& message);
void flush();
// Flushes, then waits (at most `limit`) until a launcher reading this process's stdout/stderr
// pipes has taken everything: before MPI_Abort, which drops what it has not (output_drain.cpp).
void drain_output(std::chrono::milliseconds limit);

// A status line kept below the log on an interactive terminal (the Trainer's progress bar): log
// lines print above it, it is redrawn after each. Only where stderr is a terminal, or, under
// mpirun (whose ranks write into pipes), where the launcher's stderr is one; never with TERM=dumb.
// Elsewhere set_status_line does nothing and the log stays plain lines.
bool status_line_supported();
void set_status_line(const std::string& text);  // "" removes it
// Leaves the status line where it is as a plain line (a finished bar) and starts none below it.
void keep_status_line();

template <typename... Args>
void emit(Level level, fmt::format_string<Args...> format, Args&&... args) {
  if (enabled(level)) write(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace dpt::log

#define DPT_LOG_TRACE(...) ::dpt::log::emit(::dpt::log::Level::trace, __VA_ARGS__)
#define DPT_LOG_DEBUG(...) ::dpt::log::emit(::dpt::log::Level::debug, __VA_ARGS__)
#define DPT_LOG_INFO(...) ::dpt::log::emit(::dpt::log::Level::info, __VA_ARGS__)
#define DPT_LOG_WARN(...) ::dpt::log::emit(::dpt::log::Level::warn, __VA_ARGS__)
#define DPT_LOG_ERROR(...) ::dpt::log::emit(::dpt::log::Level::error, __VA_ARGS__)
