#include "run_report.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/trainers/plot.h"

namespace dpt {
namespace {

std::string fmt_number(const std::string& label, double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return label + buffer;
}

void write_plot_from_metrics(const std::string& metrics_path, const std::string& plot_path) {
  PlotSeries train_loss{"train", {}, {}, 0x1f77b4}, test_loss{"test", {}, {}, 0xd62728};
  PlotSeries test_accuracy{"test", {}, {}, 0x2ca02c};
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) continue;
    std::string type = record.value("type", "");
    double step = record.value("step", 0.0);
    if (type == "step") {
      train_loss.x.push_back(step), train_loss.y.push_back(record.value("loss", NAN));
    } else if (type == "epoch" && record.contains("test_loss")) {
      test_loss.x.push_back(step), test_loss.y.push_back(record.value("test_loss", NAN));
      test_accuracy.x.push_back(step), test_accuracy.y.push_back(100.0 * record.value("test_accuracy", NAN));
    }
  }
  write_line_plot_png(plot_path, {PlotPanel{"loss", "step", {train_loss, test_loss}},
                                  PlotPanel{"accuracy (%)", "step", {test_accuracy}}});
}

// test_loss, test_accuracy (class targets), val_<name> (validation_step's metrics).
void add_evaluation(nlohmann::json& record, const EvalResult& eval) {
  if (!std::isnan(eval.loss)) record["test_loss"] = eval.loss;
  if (eval.accuracy) record["test_accuracy"] = *eval.accuracy;
  for (const auto& [name, value] : eval.metrics) record["val_" + name] = value;
}

}  // namespace

std::string describe(const EvalResult& eval) {
  std::string text;
  auto add = [&text](const std::string& part) { text += (text.empty() ? "" : ", ") + part; };
  if (!std::isnan(eval.loss)) add(fmt_number("test loss ", eval.loss, 4));
  if (eval.accuracy) add(fmt_number("test accuracy ", 100.0 * *eval.accuracy, 2) + "%");
  for (const auto& [name, value] : eval.metrics) {
    if (name != "loss") add(fmt_number("val " + name + " ", value, 4));
  }
  return text;
}

RunReport::RunReport(const TrainerOptions& options, int rank, bool append)
    : options_(options), rank_(rank), start_(std::chrono::steady_clock::now()) {
  if (rank_ != 0 || options_.metrics_file().empty()) return;
  metrics_.open(options_.metrics_file(), append ? std::ios::app : std::ios::trunc);
  DPT_CHECK(metrics_.good(), IoError, "cannot write metrics file ", options_.metrics_file());
}

double RunReport::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunReport::write(const std::string& json_line) {
  if (!metrics_.is_open()) return;
  metrics_ << json_line << '\n';
  metrics_.flush();
}

void RunReport::step(const StepInfo& info, const Position& position, int64_t epoch_steps) {
  DPT_LOG_INFO("epoch {} step {} ({}/{}): loss {:.4f} lr {:.3g}", info.epoch + 1, info.step,
               position.batch_in_epoch + 1, epoch_steps, info.loss, info.lr);
  write(nlohmann::json{{"type", "step"},
                       {"epoch", info.epoch + 1},
                       {"step", info.step},
                       {"loss", std::isnan(info.loss) ? nlohmann::json(nullptr) : nlohmann::json(info.loss)},
                       {"lr", info.lr},
                       {"elapsed_s", elapsed_s()}}
            .dump());
}

void RunReport::epoch(const EpochInfo& info) {
  nlohmann::json record = {{"type", "epoch"},        {"epoch", info.epoch + 1},
                           {"step", info.step},      {"train_loss", info.train_loss},
                           {"epoch_s", info.elapsed_seconds}, {"elapsed_s", elapsed_s()}};
  if (info.eval) {
    add_evaluation(record, *info.eval);
    DPT_LOG_INFO("epoch {} done in {:.1f} s: train loss {:.4f}, {}", info.epoch + 1, info.elapsed_seconds,
                 info.train_loss, describe(*info.eval));
  } else {
    DPT_LOG_INFO("epoch {} done in {:.1f} s: train loss {:.4f}", info.epoch + 1, info.elapsed_seconds,
                 info.train_loss);
  }
  write(record.dump());
}

void RunReport::final_evaluation(const Position& position, const EvalResult& eval) {
  nlohmann::json record = {
      {"type", "epoch"}, {"epoch", position.epoch + 1}, {"step", position.step}, {"elapsed_s", elapsed_s()}};
  add_evaluation(record, eval);
  DPT_LOG_INFO("final evaluation: {}", describe(eval));
  write(record.dump());
}

void RunReport::finish() {
  if (rank_ != 0 || options_.plot_file().empty() || options_.metrics_file().empty()) return;
  metrics_.close();
  write_plot_from_metrics(options_.metrics_file(), options_.plot_file());
  DPT_LOG_INFO("plot written to {}", options_.plot_file());
}

}  // namespace dpt
