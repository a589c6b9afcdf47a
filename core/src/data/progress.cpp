#include "dptrain/core/data/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(seconds + 0.5);
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02}:{:02}", h, m, s) : fmt::format("{}:{:02}", m, s);
}

}  // namespace

std::string format_progress(const std::string& label, int64_t step, int64_t total_steps, double samples_per_s,
                            double eta_s, const std::string& postfix, int bar_width) {
  std::string out = label;
  if (bar_width > 0 && total_steps > 0) {
    const auto filled = static_cast<int>(static_cast<double>(bar_width) * std::min(step, total_steps) / total_steps);
    std::string bar(static_cast<size_t>(bar_width), ' ');
    std::fill(bar.begin(), bar.begin() + filled, '=');
    if (filled < bar_width) bar[static_cast<size_t>(filled)] = '>';
    out += " [" + bar + "]";
  }
  out += fmt::format("  {}/{}  {:.1f} samples/s  ETA {}", step, total_steps, samples_per_s, format_duration(eta_s));
  if (!postfix.empty()) out += "  " + postfix;
  return out;
}

ProgressReporter::ProgressReporter(int64_t total_steps, ProgressOptions options)
    : total_steps_(total_steps), options_(std::move(options)), mode_(options_.mode()) {
  DPT_CHECK(total_steps >= 0, InvalidArgumentError, "ProgressReporter: total steps must be >= 0, got ", total_steps);
  DPT_CHECK(options_.stream() != nullptr || mode_ != ProgressMode::Bar, InvalidArgumentError,
            "ProgressReporter: a bar needs a stream");
  if (options_.rank() != 0) {
    mode_ = ProgressMode::Off;
  } else if (mode_ == ProgressMode::Auto) {
    const bool terminal = options_.stream() != nullptr && isatty(fileno(options_.stream())) == 1;
    mode_ = terminal ? ProgressMode::Bar : ProgressMode::Log;
  }
  start_ = last_output_ = Clock::now();
}

ProgressReporter::~ProgressReporter() {
  if (mode_ == ProgressMode::Bar && steps_ > 0 && !finished_) {
    if (options_.stream() == stderr) {
      log::keep_status_line();
    } else {
      std::fputc('\n', options_.stream());
      std::fflush(options_.stream());
    }
  }
}

void ProgressReporter::draw_bar(const std::string& text, bool final) {
  if (options_.stream() == stderr) {
    // The log's status line: log lines of any thread print above the bar, never through it.
    log::set_status_line(text);
    if (final) log::keep_status_line();
    return;
  }
  std::fprintf(options_.stream(), "\r%s\x1b[K%s", text.c_str(), final ? "\n" : "");  // \x1b[K: clear to line end
  std::fflush(options_.stream());
}

double ProgressReporter::elapsed_s() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

double ProgressReporter::samples_per_second() const {
  const double elapsed = elapsed_s();
  return elapsed > 0 ? static_cast<double>(samples_) / elapsed : 0.0;
}

std::string ProgressReporter::line(const std::string& postfix, int bar_width) const {
  const double elapsed = elapsed_s();
  const double eta =
      steps_ > 0 ? elapsed / static_cast<double>(steps_) * static_cast<double>(total_steps_ - steps_) : NAN;
  return format_progress(options_.label(), steps_, total_steps_, samples_per_second(), eta, postfix, bar_width);
}

void ProgressReporter::update(int64_t samples, const std::string& postfix) {
  ++steps_;
  samples_ += samples;
  if (mode_ == ProgressMode::Off) return;
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_output_).count();
  if (mode_ == ProgressMode::Bar) {
    if (since < 0.1 && steps_ < total_steps_) return;
    draw_bar(line(postfix, 30), /*final=*/false);
  } else {
    if (since < options_.log_interval_s()) return;
    DPT_LOG_INFO("{}", line(postfix, 0));
  }
  last_output_ = now;
}

void ProgressReporter::finish(const std::string& postfix) {
  if (finished_) return;
  finished_ = true;
  if (mode_ == ProgressMode::Bar) {
    draw_bar(line(postfix, 30), /*final=*/true);
  } else if (mode_ == ProgressMode::Log) {
    DPT_LOG_INFO("{} done in {:.1f} s", line(postfix, 0), elapsed_s());
  }
}

}  // namespace dpt
