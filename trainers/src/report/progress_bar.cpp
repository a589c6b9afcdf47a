#include "report/progress_bar.h"

#include <cmath>

#include "dptrain/core/data/progress.h"
#include "dptrain/core/logging.h"

namespace dpt {

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
  log::set_status_line(format_progress(fmt::format("epoch {}/{}", epoch + 1, epochs_), batch_in_epoch, epoch_steps,
                                       static_cast<double>(global_batch_) / per_step,
                                       per_step * static_cast<double>(planned_steps_ - step),
                                       fmt::format("loss {:.4f}", loss_value), /*bar_width=*/28));
}

EvaluationBar::EvaluationBar(bool enabled, int64_t batches)
    : active_(enabled && batches > 0 && log::status_line_supported()),
      batches_(batches),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

EvaluationBar::~EvaluationBar() {
  if (active_) log::set_status_line("");
}

void EvaluationBar::step(int64_t done, int64_t samples) {
  if (!active_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < batches_ && now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(batches_ - done) : NAN;
  log::set_status_line(format_progress("evaluating", done, batches_, elapsed > 0 ? samples / elapsed : 0.0, eta, "",
                                       /*bar_width=*/28));
}

}  // namespace dpt
