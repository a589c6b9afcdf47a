#include "report/run_report.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

std::string fmt_number(const std::string& label, double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
  return label + buffer;
}

// test_loss, test_accuracy (class targets), val_<name> (validation_step's metrics).
void add_evaluation(nlohmann::json& record, const EvalResult& eval) {
  if (!std::isnan(eval.loss)) record["test_loss"] = eval.loss;
  if (eval.accuracy) record["test_accuracy"] = *eval.accuracy;
  if (eval.perplexity) record["test_perplexity"] = *eval.perplexity;
  if (eval.top_k_accuracy) record[detail::concat("test_top", eval.top_k, "_accuracy")] = *eval.top_k_accuracy;
  for (const auto& [name, value] : eval.metrics) record["val_" + name] = value;
}

// TensorBoard's tags for an evaluation: test/loss, test/accuracy, val/<name>. Accuracy is a
// fraction (0..1) in every file, as torchmetrics and Lightning log it; only the log line prints a
// percentage, with its sign.
void add_evaluation(std::vector<std::pair<std::string, double>>& scalars, const EvalResult& eval) {
  scalars.emplace_back("test/loss", eval.loss);
  if (eval.accuracy) scalars.emplace_back("test/accuracy", *eval.accuracy);
  if (eval.perplexity) scalars.emplace_back("test/perplexity", *eval.perplexity);
  if (eval.top_k_accuracy) {
    scalars.emplace_back(detail::concat("test/top", eval.top_k, "_accuracy"), *eval.top_k_accuracy);
  }
  for (const auto& [name, value] : eval.metrics) scalars.emplace_back("val/" + name, value);
}

}  // namespace

std::string describe(const EvalResult& eval) {
  std::string text;
  auto add = [&text](const std::string& part) { text += (text.empty() ? "" : ", ") + part; };
  if (!std::isnan(eval.loss)) add(fmt_number("test loss ", eval.loss, 4));
  if (eval.perplexity) add(fmt_number("perplexity ", *eval.perplexity, 2));
  if (eval.accuracy) add(fmt_number("test accuracy ", 100.0 * *eval.accuracy, 2) + "%");
  if (eval.top_k_accuracy) {
    add(fmt_number(detail::concat("top-", eval.top_k, " accuracy "), 100.0 * *eval.top_k_accuracy, 2) + "%");
  }
  for (const auto& [name, value] : eval.metrics) {
    if (name != "loss") add(fmt_number("val " + name + " ", value, 4));
  }
  return text;
}

RunReport::RunReport(const TrainerOptions& options, int rank, bool append, int64_t global_batch,
                     int64_t planned_steps, int64_t tokens_per_sample, int world)
    : options_(options),
      rank_(rank),
      global_batch_(global_batch),
      tokens_per_sample_(tokens_per_sample),
      world_(world),
      start_(std::chrono::steady_clock::now()),
      progress_(options.progress_bar() && rank == 0, options.epochs(), global_batch, planned_steps) {
  if (rank_ != 0) return;
  if (!options_.metrics_file().empty()) {
    fs::create_directories(fs::parent_path(options_.metrics_file()));
    metrics_.open(options_.metrics_file(), append ? std::ios::app : std::ios::trunc);
    DPT_CHECK(metrics_.good(), IoError, "--metrics ", options_.metrics_file(), ": cannot open for writing (",
              std::strerror(errno), ")");
  }
  if (!options_.tensorboard_dir().empty()) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(options_.tensorboard_dir());
    DPT_LOG_INFO("TensorBoard events in {} (tensorboard --logdir {})", tensorboard_->path(), options_.tensorboard_dir());
  }
}

double RunReport::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunReport::write(const std::string& json_lines) {
  if (!metrics_.is_open()) return;
  errno = 0;
  metrics_ << json_lines << '\n';
  metrics_.flush();
  if (metrics_.good()) return;
  const std::string why = errno != 0 ? std::strerror(errno) : "write error";
  metrics_.close();
  DPT_CHECK(options_.metrics_optional(), IoError, "--metrics ", options_.metrics_file(), ": write failed (", why,
            "); the run stops rather than lose its metrics");
  DPT_LOG_WARN("--metrics {}: write failed ({}); no more metrics are written in this run", options_.metrics_file(), why);
}

void RunReport::after_step(const StepInfo& info, const Position& position, int64_t epoch_steps) {
  if (last_log_step_ < 0) last_log_step_ = info.step - 1;  // the first step of this run
  if (std::isfinite(info.exposed_comm_s)) exposed_comm_s_ += info.exposed_comm_s, ++exposed_comm_steps_;
  progress_.step(info.epoch, position.batch_in_epoch + 1, epoch_steps, info.step, info.local_loss);
}

void RunReport::step(const StepInfo& info, const Position& position, int64_t epoch_steps) {
  const double now = elapsed_s();
  const int64_t steps = std::max<int64_t>(info.step - last_log_step_, 1);
  const double step_s = (now - last_log_s_) / static_cast<double>(steps);
  const double samples_per_s = static_cast<double>(global_batch_) / step_s;
  const double exposed_ms = exposed_comm_steps_ > 0 ? 1e3 * exposed_comm_s_ / static_cast<double>(exposed_comm_steps_) : NAN;
  last_log_s_ = now, last_log_step_ = info.step, exposed_comm_s_ = 0, exposed_comm_steps_ = 0;

  const double tokens_per_s = samples_per_s * static_cast<double>(tokens_per_sample_);
  // Achieved model FLOP/s of one rank over one device's peak.
  const bool mfu_known = tokens_per_sample_ > 0 && options_.flops_per_token() > 0 && options_.peak_tflops() > 0;
  const double mfu = mfu_known ? tokens_per_s / world_ * options_.flops_per_token() / (options_.peak_tflops() * 1e12) : NAN;
  if (tokens_per_sample_ > 0) {
    DPT_LOG_INFO("epoch {} step {} ({}/{}): loss {:.4f} lr {:.3g}, {:.0f} samples/s, {:.0f} tokens/s{}", info.epoch + 1,
                 info.step, position.batch_in_epoch + 1, epoch_steps, info.loss, info.lr, samples_per_s, tokens_per_s,
                 mfu_known ? fmt::format(", MFU {:.1f}%", 100 * mfu) : std::string());
  } else {
    DPT_LOG_INFO("epoch {} step {} ({}/{}): loss {:.4f} lr {:.3g}, {:.0f} samples/s", info.epoch + 1, info.step,
                 position.batch_in_epoch + 1, epoch_steps, info.loss, info.lr, samples_per_s);
  }
  nlohmann::json record{{"type", "step"},
                        {"epoch", info.epoch + 1},
                        {"step", info.step},
                        {"loss", std::isnan(info.loss) ? nlohmann::json(nullptr) : nlohmann::json(info.loss)},
                        {"lr", info.lr},
                        {"samples_per_s", samples_per_s},
                        {"elapsed_s", now}};
  if (tokens_per_sample_ > 0) record["tokens_per_s"] = tokens_per_s;
  if (mfu_known) record["mfu"] = mfu;
  write(record.dump());
  if (tensorboard_) {
    std::vector<std::pair<std::string, double>> scalars = {{"train/loss", info.loss},
                                                           {"train/lr", info.lr},
                                                           {"perf/samples_per_s", samples_per_s},
                                                           {"perf/step_time_ms", 1e3 * step_s},
                                                           {"perf/exposed_comm_ms", exposed_ms}};
    if (tokens_per_sample_ > 0) scalars.emplace_back("perf/tokens_per_s", tokens_per_s);
    if (mfu_known) scalars.emplace_back("perf/mfu", mfu);
    tensorboard_->add_scalars(info.step, scalars);
    tensorboard_->flush();
  }
}

void RunReport::rank_spread(const RankSpread& spread) {
  if (rank_ != 0) return;
  const double max_ms = 1e3 * spread.max_s(), median_ms = 1e3 * spread.median_s;
  DPT_LOG_INFO("steps {}-{}: busy time per step on {} ranks: median {:.2f} ms, max {:.2f} ms on rank {} ({}), "
               "{:.2f}x the other ranks' median",
               spread.first_step, spread.last_step, spread.busy_s.size(), median_ms, max_ms, spread.slowest_rank,
               spread.slowest_host, spread.slowdown);
  if (spread.became_straggler) {
    DPT_LOG_WARN("rank {} on host {} is a straggler: its busy time per step has been {:.2f}x the other ranks' "
                 "median (>= --straggler-threshold {:.2f}) for {} log intervals in a row, and every other rank "
                 "waits for it at each all-reduce",
                 spread.slowest_rank, spread.slowest_host, spread.slowdown, options_.straggler_threshold(),
                 spread.intervals_slowest);
  }
  nlohmann::json busy = nlohmann::json::array();
  for (double s : spread.busy_s) busy.push_back(1e3 * s);
  write(nlohmann::json{{"type", "ranks"},
                       {"first_step", spread.first_step},
                       {"step", spread.last_step},
                       {"busy_ms", busy},
                       {"median_ms", median_ms},
                       {"slowest_rank", spread.slowest_rank},
                       {"slowest_host", spread.slowest_host},
                       {"slowdown", spread.slowdown},
                       {"straggler", spread.straggler}}
            .dump());
  if (tensorboard_) {
    tensorboard_->add_scalars(spread.last_step, {{"perf/rank_busy_median_ms", median_ms},
                                                 {"perf/rank_busy_max_ms", max_ms},
                                                 {"perf/rank_slowdown", spread.slowdown},
                                                 {"perf/slowest_rank", static_cast<double>(spread.slowest_rank)}});
    tensorboard_->flush();
  }
}

void RunReport::step_losses(const std::vector<std::pair<int64_t, double>>& losses, int64_t epoch) {
  if (losses.empty() || rank_ != 0) return;
  std::string lines;  // one write and one flush for the interval's steps
  for (const auto& [step, loss] : losses) {
    if (!lines.empty()) lines += '\n';
    lines += nlohmann::json{{"type", "loss"},
                            {"epoch", epoch + 1},
                            {"step", step},
                            {"loss", std::isfinite(loss) ? nlohmann::json(loss) : nlohmann::json(nullptr)}}
                 .dump();
    if (tensorboard_) tensorboard_->add_scalars(step, {{"train/loss", loss}});
  }
  write(lines);
}

void RunReport::epoch(const EpochInfo& info) {
  nlohmann::json record = {{"type", "epoch"},        {"epoch", info.epoch + 1},
                           {"step", info.step},      {"train_loss", info.train_loss},
                           {"epoch_s", info.elapsed_seconds}, {"elapsed_s", elapsed_s()}};
  std::vector<std::pair<std::string, double>> scalars = {{"train/epoch_loss", info.train_loss},
                                                         {"perf/epoch_s", info.elapsed_seconds}};
  if (info.eval) {
    add_evaluation(record, *info.eval);
    add_evaluation(scalars, *info.eval);
    DPT_LOG_INFO("epoch {} done in {:.1f} s: train loss {:.4f}, {}", info.epoch + 1, info.elapsed_seconds,
                 info.train_loss, describe(*info.eval));
  } else {
    DPT_LOG_INFO("epoch {} done in {:.1f} s: train loss {:.4f}", info.epoch + 1, info.elapsed_seconds,
                 info.train_loss);
  }
  write(record.dump());
  if (tensorboard_) {
    tensorboard_->add_scalars(info.step, scalars);
    tensorboard_->flush();
  }
  // The next interval's samples/s measures training, not this evaluation.
  last_log_s_ = elapsed_s();
  last_log_step_ = info.step;
}

void RunReport::final_evaluation(const Position& position, const EvalResult& eval) {
  record_evaluation(position, eval, "epoch", "final evaluation");
}

void RunReport::evaluation(const Position& position, const EvalResult& eval, const std::string& what) {
  record_evaluation(position, eval, "eval", what);
}

void RunReport::record_evaluation(const Position& position, const EvalResult& eval, const std::string& type,
                                  const std::string& what) {
  nlohmann::json record = {
      {"type", type}, {"epoch", position.epoch + 1}, {"step", position.step}, {"elapsed_s", elapsed_s()}};
  add_evaluation(record, eval);
  DPT_LOG_INFO("{}: {}", what, describe(eval));
  write(record.dump());
  if (tensorboard_) {
    std::vector<std::pair<std::string, double>> scalars;
    add_evaluation(scalars, eval);
    tensorboard_->add_scalars(position.step, scalars);
    tensorboard_->flush();
  }
}

void RunReport::finish() {
  progress_.clear();
  if (metrics_.is_open()) metrics_.close();
  if (tensorboard_) tensorboard_->flush();
}

}  // namespace dpt
