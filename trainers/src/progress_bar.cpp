#include "progress_bar.h"

#include <algorithm>
#include <cmath>

#include "dptrain/core/logging.h"

namespace dpt {
namespace {

std::string duration_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(std::llround(seconds));
  char buffer[32];
  if (total >= 3600) {
    std::snprintf(buffer, sizeof(buffer), "%lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                  static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lld:%02lld", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  }
  return buffer;
}

}  // namespace

ProgressBar::ProgressBar(bool enabled, int64_t epochs, int64_t global_batch, int64_t planned_steps)
    : active_(enabled && log::status_line_supported()),
      epochs_(epochs),
      global_batch_(global_batch),
      planned_steps_(planned_steps),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() { clear(); }

void ProgressBar::clear() {
  if (active_) log::set_status_line("");
}

std::string ProgressBar::render(int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss,
                                double samples_per_s, double eta_s, int width) {
  const double fraction = total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0) : 0.0;
  const int filled = static_cast<int>(fraction * width);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
  char text[256];
  std::snprintf(text, sizeof(text), "epoch %lld/%lld [%s] %lld/%lld  loss %.4f  %.0f samples/s  ETA %s",
                static_cast<long long>(epoch + 1), static_cast<long long>(epochs), bar.c_str(),
                static_cast<long long>(done), static_cast<long long>(total), loss, samples_per_s,
                duration_text(eta_s).c_str());
  return text;
}

void ProgressBar::step(int64_t epoch, int64_t batch_in_epoch, int64_t epoch_steps, int64_t step,
                       const torch::Tensor& loss) {
  if (!active_) return;
  if (first_step_ < 0) {
    first_step_ = step - 1;
    start_ = std::chrono::steady_clock::now();
  }
  const auto now = std::chrono::steady_clock::now();
  const bool last = batch_in_epoch == epoch_steps || step == planned_steps_;
  if (!last && now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const int64_t steps_done = step - first_step_;
  const double per_step = steps_done > 0 ? elapsed / static_cast<double>(steps_done) : NAN;
  const double loss_value = loss.defined() ? loss.item<double>() : NAN;
  log::set_status_line(render(epoch, epochs_, batch_in_epoch, epoch_steps, loss_value,
                              static_cast<double>(global_batch_) / per_step,
                              per_step * static_cast<double>(planned_steps_ - step)));
}

}  // namespace dpt
