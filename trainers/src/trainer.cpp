#include "dptrain/trainers/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>

#include "dptrain/core/data/image_folder.h"
#include "dptrain/core/data/preprocess_pool.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/trainers/checkpoint.h"
#include "dptrain/trainers/plot.h"
#include "gradient_sync.h"
#include "loss_scaler.h"
#include "loss_tracker.h"
#include "run_state.h"

namespace dpt {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The one line of a libtorch / TorchScript error that says what went wrong: TorchScript interpreter
// errors end with "RuntimeError: <reason>" after a long traceback; c10 errors start with it.
std::string short_reason(const std::exception& error) {
  std::string what = error.what();
  if (auto c10_error = dynamic_cast<const c10::Error*>(&error)) what = c10_error->what_without_backtrace();
  auto marker = what.rfind("RuntimeError: ");
  if (marker != std::string::npos) what = what.substr(marker + 14);
  auto end = what.find('\n');
  return end == std::string::npos ? what : what.substr(0, end);
}

// Mean (or summed) loss of logits against class labels, computed in float32 (autocast-safe).
torch::Tensor loss_of(const std::string& kind, const torch::Tensor& logits, const torch::Tensor& targets,
                      bool sum) {
  namespace F = torch::nn::functional;
  auto outputs = logits.to(torch::kFloat);
  if (kind == "nll") {
    return sum ? F::nll_loss(outputs, targets, F::NLLLossFuncOptions().reduction(torch::kSum))
               : F::nll_loss(outputs, targets);
  }
  return sum ? F::cross_entropy(outputs, targets, F::CrossEntropyFuncOptions().reduction(torch::kSum))
             : F::cross_entropy(outputs, targets);
}

// This rank's share of an evaluation split: positions rank, rank + W, ...
torch::Tensor evaluation_indices(int64_t size, int rank, int world) {
  return torch::arange(rank, size, world, torch::kLong);
}

class MetricsWriter {
 public:
  MetricsWriter(const std::string& path, bool append) : path_(path) {
    if (path_.empty()) return;
    out_.open(path_, append ? std::ios::app : std::ios::trunc);
    DPT_CHECK(out_.good(), IoError, "cannot write metrics file ", path_);
  }
  void write(const nlohmann::json& record) {
    if (!out_.is_open()) return;
    out_ << record.dump() << '\n';
    out_.flush();
  }

 private:
  std::string path_;
  std::ofstream out_;
};

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

}  // namespace

// Rank 0 runs `produce`; every rank returns its bytes or throws the same error. Keeps other ranks
// from waiting forever in a broadcast when rank 0 fails to read a file.
Bytes bytes_from_rank0(const CommunicatorPtr& world, const std::function<Bytes()>& produce) {
  bool single = !world || world->size() == 1;
  if (single) return produce();
  Bytes message;
  if (world->rank() == 0) {
    try {
      message = produce();
      message.insert(message.begin(), '\1');
    } catch (const Error& e) {
      std::string text = e.what();
      message.assign(text.begin(), text.end());
      message.insert(message.begin(), static_cast<char>(static_cast<int>(e.kind()) + 2));
    }
  }
  message = world->broadcast_bytes(message, 0);
  DPT_CHECK(!message.empty(), InternalError, "empty broadcast from rank 0");
  if (message.front() == '\1') return Bytes(message.begin() + 1, message.end());
  std::string text(message.begin() + 1, message.end());
  auto kind = static_cast<ErrorKind>(message.front() - 2);
  if (kind == ErrorKind::InvalidArgument) throw InvalidArgumentError(text);
  if (kind == ErrorKind::Io) throw IoError(text);
  if (kind == ErrorKind::Model) throw ModelError(text);
  throw DataError(text);
}

void validate(const TrainerOptions& o) {
  DPT_CHECK(o.epochs() > 0, InvalidArgumentError, "--epochs must be > 0, got ", o.epochs());
  DPT_CHECK(o.max_steps() >= 0, InvalidArgumentError, "--max-steps must be >= 0, got ", o.max_steps());
  DPT_CHECK(o.stop_after_steps() >= 0, InvalidArgumentError, "--stop-after-steps must be >= 0, got ",
            o.stop_after_steps());
  DPT_CHECK(o.batch_size() > 0, InvalidArgumentError, "--batch-size must be > 0, got ", o.batch_size());
  DPT_CHECK(o.workers() >= 0, InvalidArgumentError, "--workers must be >= 0, got ", o.workers());
  DPT_CHECK(o.eval_batch_size() > 0, InvalidArgumentError, "--eval-batch-size must be > 0, got ",
            o.eval_batch_size());
  DPT_CHECK(o.accumulation_steps() > 0, InvalidArgumentError, "--accumulation-steps must be > 0, got ",
            o.accumulation_steps());
  DPT_CHECK(std::isfinite(o.grad_clip_norm()) && o.grad_clip_norm() >= 0, InvalidArgumentError,
            "--clip-grad-norm must be >= 0, got ", o.grad_clip_norm());
  DPT_CHECK(o.loss() == "cross_entropy" || o.loss() == "nll", InvalidArgumentError, "--loss: unknown loss '",
            o.loss(), "' (choose cross_entropy or nll)");
  DPT_CHECK(o.seed() >= 0, InvalidArgumentError, "--seed must be >= 0, got ", o.seed());
  DPT_CHECK(o.checkpoint_every_steps() >= 0, InvalidArgumentError, "--checkpoint-every must be >= 0, got ",
            o.checkpoint_every_steps());
  DPT_CHECK(o.keep_checkpoints() >= 1, InvalidArgumentError, "--keep-checkpoints must be >= 1, got ",
            o.keep_checkpoints());
  DPT_CHECK(o.log_every_steps() >= 0, InvalidArgumentError, "--log-every must be >= 0, got ", o.log_every_steps());
  DPT_CHECK(o.resume().empty() || o.resume() == "latest" || fs::is_regular_file(o.resume()), InvalidArgumentError,
            "--resume: checkpoint file ", o.resume(), " does not exist");
  DPT_CHECK(o.resume() != "latest" || !o.checkpoint_dir().empty(), InvalidArgumentError,
            "--resume latest needs --checkpoint-dir");
  DPT_CHECK(!o.mixed_precision() || o.device().is_cuda(), InvalidArgumentError,
            "--amp (mixed precision) needs a CUDA device; this run is on ", o.device().str());
  for (const auto& [flag, path] : {std::pair<const char*, std::string>{"--metrics", o.metrics_file()},
                                   std::pair<const char*, std::string>{"--plot", o.plot_file()}}) {
    DPT_CHECK(path.empty() || fs::parent_is_writable(path), InvalidArgumentError, flag, " ", path,
              ": the directory does not exist or is not writable");
  }
  validate(o.optimizer());
  validate(o.schedule());
}

struct Trainer::State {
  std::unique_ptr<GradientSync> sync;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  LossScaler scaler;
};

Trainer::Trainer(Model model, CommunicatorPtr world, TrainerOptions options)
    : model_(std::move(model)), world_(std::move(world)), options_(std::move(options)), state_(new State) {
  validate(options_);
  model_.prepare_for_training();
  model_.to(options_.device());
  state_->sync = std::make_unique<GradientSync>(model_, world_);
  state_->optimizer = make_optimizer(model_.parameters(), options_.optimizer());
  state_->scaler.enabled = options_.mixed_precision();
}

Trainer::~Trainer() = default;

int Trainer::rank() const { return world_ ? world_->rank() : 0; }
int Trainer::world_size() const { return world_ ? world_->size() : 1; }

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) { callbacks_.push_back(std::move(callback)); }

std::pair<torch::Tensor, torch::Tensor> gather_batch(const Dataset& data, const torch::Tensor& indices) {
  return gather_examples(data, indices);
}

void Trainer::check_model_fits(const Dataset& data) {
  DPT_CHECK(data.size() > 0, DataError, "the dataset is empty");
  check_model_fits(gather_batch(data, torch::arange(std::min<int64_t>(2, data.size()), torch::kLong)),
                   dpt::largest_label(data));
}

void Trainer::check_model_fits(const std::pair<torch::Tensor, torch::Tensor>& samples,
                               std::optional<int64_t> max_label_known) {
  const auto& [inputs, targets] = samples;
  torch::Tensor outputs;
  bool was_training = model_.is_training();
  model_.eval();
  try {
    torch::NoGradGuard no_grad;
    outputs = model_.forward(inputs.to(options_.device()));
  } catch (const Error&) {
    model_.train(was_training);
    throw;
  } catch (const std::exception& e) {
    model_.train(was_training);
    DPT_THROW(ModelError, "the model cannot take inputs of shape ", inputs.sizes(), ": ", short_reason(e));
  }
  model_.train(was_training);
  const int64_t max_label = max_label_known.value_or(targets.numel() > 0 ? targets.max().item<int64_t>() : 0);
  DPT_CHECK(outputs.dim() == 2 && outputs.size(0) == inputs.size(0) && outputs.size(1) > max_label, ModelError,
            "model output of shape ", outputs.sizes(), " for inputs of shape ", inputs.sizes(),
            " is incompatible with the labels: ", options_.loss(), " needs [N, C] class scores with C > ", max_label,
            " (the largest label)");
}

EvalResult Trainer::evaluate(const Dataset& data) {
  bool was_training = model_.is_training();
  model_.eval();
  state_->sync->sync_buffers();
  torch::NoGradGuard no_grad;
  auto indices = evaluation_indices(data.size(), rank(), world_size());
  // [loss sum, correct, count], accumulated on the device: no host round trip per batch.
  const torch::Device device = world_ ? world_->device() : options_.device();
  auto totals = torch::zeros({3}, torch::TensorOptions(torch::kDouble).device(options_.device()));
  for (int64_t begin = 0; begin < indices.size(0); begin += options_.eval_batch_size()) {
    auto [inputs, targets] = gather_batch(data, indices.slice(0, begin, begin + options_.eval_batch_size()));
    inputs = inputs.to(options_.device(), /*non_blocking=*/true);
    targets = targets.to(options_.device(), /*non_blocking=*/true);
    auto logits = model_.forward(inputs);
    totals[0] += loss_of(options_.loss(), logits, targets, /*sum=*/true).to(torch::kDouble);
    totals[1] += logits.argmax(1).eq(targets).sum().to(torch::kDouble);
    totals[2] += static_cast<double>(targets.size(0));
  }
  totals = totals.to(device);
  if (world_size() > 1) world_->allreduce(totals);
  model_.train(was_training);
  auto host = totals.cpu();
  EvalResult result;
  result.samples = static_cast<int64_t>(host[2].item<double>());
  DPT_CHECK(result.samples > 0, DataError, "evaluation on an empty dataset");
  result.loss = host[0].item<double>() / result.samples;
  result.accuracy = host[1].item<double>() / result.samples;
  return result;
}

torch::Tensor Trainer::predict(const Dataset& data) {
  bool was_training = model_.is_training();
  model_.eval();
  torch::NoGradGuard no_grad;
  auto indices = evaluation_indices(data.size(), rank(), world_size());
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < indices.size(0); begin += options_.eval_batch_size()) {
    auto [inputs, targets] = gather_batch(data, indices.slice(0, begin, begin + options_.eval_batch_size()));
    chunks.push_back(model_.forward(inputs.to(options_.device(), /*non_blocking=*/true)));
  }
  model_.train(was_training);
  torch::Tensor local = chunks.empty() ? torch::empty({0}) : torch::cat(chunks).to(torch::kCPU);
  if (world_size() == 1) return local;
  // Each rank's rows are positions rank, rank + W, ...: interleave them back on rank 0.
  auto all = world_->allgather_bytes(serialize_tensor(local));
  if (rank() != 0) return torch::Tensor();
  std::vector<torch::Tensor> parts;
  for (const auto& bytes : all) parts.push_back(deserialize_tensor(bytes));
  torch::Tensor reference;
  for (const auto& part : parts) {
    if (part.numel() > 0) reference = part;
  }
  DPT_CHECK(reference.defined(), DataError, "inference on an empty dataset");
  auto shape = reference.sizes().vec();
  shape[0] = data.size();
  auto output = torch::empty(shape, reference.options());
  for (int r = 0; r < world_size(); ++r) {
    if (parts[r].numel() == 0) continue;
    output.slice(0, r, data.size(), world_size()).copy_(parts[r]);
  }
  return output;
}

namespace {

// The loss of one micro-batch, under fp16 autocast when `amp`; the loss itself in float32.
torch::Tensor micro_batch_loss(GradientSync& sync, const std::string& kind, const torch::Tensor& inputs,
                               const torch::Tensor& targets, bool amp) {
  if (!amp) return loss_of(kind, sync.forward(inputs), targets, /*sum=*/false);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::increment_nesting();
  struct LeaveAutocast {
    ~LeaveAutocast() {
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_autocast_enabled(at::kCUDA, false);
    }
  } leave;
  return loss_of(kind, sync.forward(inputs), targets, /*sum=*/false);
}

const char* kNonFiniteAdvice = "lower --lr, or pass --skip-nonfinite-loss to skip such steps";

}  // namespace

StepInfo Trainer::train_step(const std::function<std::pair<torch::Tensor, torch::Tensor>()>& next_micro_batch,
                             LossTracker& losses) {
  const auto& o = options_;
  auto& optimizer = *state_->optimizer;
  auto& scaler = state_->scaler;
  optimizer.zero_grad();
  torch::Tensor step_loss;  // this rank's mean loss, kept on the device
  for (int64_t micro = 0; micro < o.accumulation_steps(); ++micro) {
    auto [inputs, targets] = next_micro_batch();
    inputs = inputs.to(o.device(), /*non_blocking=*/true);
    targets = targets.to(o.device(), /*non_blocking=*/true);
    GradientSync::Scope scope(*state_->sync, /*synchronize=*/micro + 1 == o.accumulation_steps());
    auto loss = micro_batch_loss(*state_->sync, o.loss(), inputs, targets, o.mixed_precision());
    auto scaled = loss / static_cast<double>(o.accumulation_steps());
    if (scaler.enabled) scaled = scaled * scaler.scale;
    scaled.backward();
    step_loss = step_loss.defined() ? step_loss + loss.detach() : loss.detach();
  }
  state_->sync->finish();
  step_loss = step_loss / static_cast<double>(o.accumulation_steps());

  StepInfo info;
  info.local_loss = step_loss;
  bool loss_skipped = false;
  if (o.skip_nonfinite_loss() && !losses.finite_everywhere(step_loss)) {
    DPT_LOG_WARN("step {}: non-finite loss, step skipped (--skip-nonfinite-loss)", position_step_ + 1);
    loss_skipped = info.skipped = true;
  } else {
    const auto parameters = model_.parameters();
    const bool grads_finite = scaler.unscale(parameters);
    scaler.update(grads_finite);
    if (grads_finite) {
      if (o.grad_clip_norm() > 0) torch::nn::utils::clip_grad_norm_(parameters, o.grad_clip_norm());
      optimizer.step();
    } else {
      info.skipped = true;
      DPT_LOG_DEBUG("step {}: Inf/NaN gradients under loss scale, scale now {}", position_step_ + 1, scaler.scale);
    }
  }
  losses.record(step_loss, position_step_ + 1, /*counted=*/!loss_skipped);
  info.loss = loss_skipped ? NAN : 0.0;
  return info;
}

SourceOptions source_options(const TrainerOptions& options) {
  SourceOptions source;
  source.shuffle = options.shuffle();
  source.seed = options.seed();
  source.transform = options.train_transform();
  source.pin_memory = options.device().is_cuda() && torch::cuda::is_available();
  return source;
}

TrainResult Trainer::fit(const Dataset& train, const Dataset* test) {
  // A non-owning handle: `train` outlives this call.
  std::shared_ptr<const Dataset> data(std::shared_ptr<const Dataset>(), &train);
  return fit(IndexedSource(data, source_options(options_)), test);
}

TrainResult Trainer::fit(const TrainSource& train, const Dataset* test) {
  auto start = Clock::now();
  const int world = world_size();
  const auto& o = options_;
  check_model_fits(train.first_samples(2), train.largest_label());

  const RankLayout layout{rank(), world, o.batch_size(), o.accumulation_steps()};
  const int64_t global_batch = layout.global_batch();
  DPT_CHECK(train.steps_in_epoch(0, 0, layout) > 0, InvalidArgumentError, "the training set (", train.describe(),
            ") has fewer samples per rank than one global batch needs (", world, " ranks x --batch-size ",
            o.batch_size(), " x --accumulation-steps ", o.accumulation_steps(), " = ", global_batch, ")");
  int64_t planned_steps = 0;
  for (int64_t epoch = 0; epoch < o.epochs(); ++epoch) planned_steps += train.steps_in_epoch(epoch, 0, layout);
  if (o.max_steps() > 0) planned_steps = std::min(planned_steps, o.max_steps());
  LrSchedule schedule(o.schedule(), o.optimizer().lr(), planned_steps);
  auto& optimizer = *state_->optimizer;
  const RunParts run{model_, optimizer, state_->scaler, world_, o, global_batch,
                     train.resumes_exactly_at_other_world_sizes()};

  Position position;
  const bool resumed = !o.resume().empty();
  if (resumed) position = restore_run(run);

  std::unique_ptr<CheckpointDirectory> checkpoints;
  if (!o.checkpoint_dir().empty()) {
    checkpoints = std::make_unique<CheckpointDirectory>(o.checkpoint_dir(), o.keep_checkpoints());
    if (rank() == 0) checkpoints->prepare();
  }
  MetricsWriter metrics(rank() == 0 ? o.metrics_file() : "", resumed);
  LossTracker losses(world_, o.device());
  // The model is never checkpointed (or reported) after a step whose loss was NaN or Inf.
  auto check_finite = [&] {
    if (!o.skip_nonfinite_loss()) losses.check_finite(kNonFiniteAdvice);
  };
  auto save_checkpoint = [&] {
    if (!checkpoints) return;
    check_finite();
    state_->sync->sync_buffers();
    save_run(run, position, *checkpoints);
  };

  for (auto& callback : callbacks_) callback->on_train_begin(position.step);
  DPT_LOG_INFO("training: {}, {} rank(s) x batch {} x accumulation {} = global batch {}, {} steps in epoch 1, "
               "{} epochs, {} planned steps",
               train.describe(), world, o.batch_size(), o.accumulation_steps(), global_batch,
               train.steps_in_epoch(0, 0, layout), o.epochs(), planned_steps);

  TrainResult result;
  model_.train();
  int64_t steps_this_run = 0;
  PreprocessPool pool(o.workers(), o.prefetch_batches());
  bool finished = position.step >= planned_steps;
  for (; !finished && position.epoch < o.epochs(); ++position.epoch) {
    auto epoch_start = Clock::now();
    const int64_t epoch_steps = train.steps_in_epoch(position.epoch, position.epoch_offset, layout);
    losses.start_epoch();
    // The rest of this epoch's micro-batches, in the order the loop below takes them, prepared
    // ahead on the pool; leaving the epoch early (stop, error) cancels the stream.
    const int64_t first_micro = position.batch_in_epoch * o.accumulation_steps();
    auto micro_batches = pool.map<Batch>(
        std::max<int64_t>(0, epoch_steps * o.accumulation_steps() - first_micro),
        [&train, layout, first_micro, epoch = position.epoch, offset = position.epoch_offset](int64_t k) {
          return train.micro_batch(epoch, offset, first_micro + k, layout);
        });
    auto next_micro_batch = [&] {
      auto prepared = micro_batches.next();
      DPT_ASSERT(prepared.has_value(), "the preprocessing stream ended before epoch ", position.epoch + 1);
      return std::move(*prepared);
    };
    for (; position.batch_in_epoch < epoch_steps; ++position.batch_in_epoch) {
      const double lr = schedule.lr_at(position.step);
      set_learning_rate(optimizer, lr);
      position_step_ = position.step;
      StepInfo info = train_step(next_micro_batch, losses);
      ++position.step;
      ++steps_this_run;
      info.epoch = position.epoch;
      info.step = position.step;
      info.lr = lr;
      const bool log_now = o.log_every_steps() > 0 && (position.step % o.log_every_steps() == 0 || position.step == 1);
      if (log_now) {
        check_finite();
        const bool loss_skipped = std::isnan(info.loss);
        info.loss = loss_skipped ? NAN : losses.last_step_loss();
        DPT_LOG_INFO("epoch {} step {} ({}/{}): loss {:.4f} lr {:.3g}", position.epoch + 1, position.step,
                     position.batch_in_epoch + 1, epoch_steps, info.loss, lr);
        metrics.write({{"type", "step"},
                       {"epoch", position.epoch + 1},
                       {"step", position.step},
                       {"loss", loss_skipped ? nlohmann::json(nullptr) : nlohmann::json(info.loss)},
                       {"lr", lr},
                       {"elapsed_s", seconds_since(start)}});
      } else {
        info.loss = NAN;  // reported only at log steps (see StepInfo)
      }
      for (auto& callback : callbacks_) callback->on_step_end(info);
      bool reached_max = position.step >= planned_steps;
      bool stop_now = o.stop_after_steps() > 0 && steps_this_run >= o.stop_after_steps() && !reached_max;
      bool periodic = o.checkpoint_every_steps() > 0 && position.step % o.checkpoint_every_steps() == 0;
      if (reached_max || stop_now || periodic) {
        ++position.batch_in_epoch;  // the checkpoint points after this step
        save_checkpoint();
        --position.batch_in_epoch;
      }
      if (reached_max) finished = true;
      if (stop_now) {
        result.stopped_early = true;
        DPT_LOG_INFO("stopping after {} step(s) of this run (--stop-after-steps); continue with --resume",
                     steps_this_run);
        finished = true;
      }
      if (finished) {
        ++position.batch_in_epoch;
        break;
      }
    }
    bool epoch_complete = position.batch_in_epoch >= epoch_steps;
    if (!epoch_complete) break;  // stopped mid-epoch
    check_finite();
    EpochInfo epoch_info;
    epoch_info.epoch = position.epoch;
    epoch_info.step = position.step;
    epoch_info.train_loss = losses.epoch_mean();
    if (test && o.eval_each_epoch()) epoch_info.eval = evaluate(*test);
    epoch_info.elapsed_seconds = seconds_since(epoch_start);
    nlohmann::json record = {{"type", "epoch"},          {"epoch", position.epoch + 1},
                             {"step", position.step},    {"train_loss", epoch_info.train_loss},
                             {"epoch_s", epoch_info.elapsed_seconds}, {"elapsed_s", seconds_since(start)}};
    if (epoch_info.eval) {
      record["test_loss"] = epoch_info.eval->loss;
      record["test_accuracy"] = epoch_info.eval->accuracy;
      DPT_LOG_INFO("epoch {} done in {:.1f} s: train loss {:.4f}, test loss {:.4f}, test accuracy {:.2f}%",
                   position.epoch + 1, epoch_info.elapsed_seconds, epoch_info.train_loss, epoch_info.eval->loss,
                   100.0 * epoch_info.eval->accuracy);
      result.final_eval = epoch_info.eval;
    } else {
      DPT_LOG_INFO("epoch {} done in {:.1f} s: train loss {:.4f}", position.epoch + 1, epoch_info.elapsed_seconds,
                   epoch_info.train_loss);
    }
    metrics.write(record);
    for (auto& callback : callbacks_) callback->on_epoch_end(epoch_info);
    ++result.epochs_completed;
    // The checkpoint of a finished epoch points at the start of the next one.
    position.batch_in_epoch = 0;
    position.epoch_offset = 0;
    ++position.epoch;
    save_checkpoint();
    --position.epoch;
  }
  check_finite();
  state_->sync->sync_buffers();
  if (test && !result.stopped_early && (!result.final_eval || !o.eval_each_epoch() ||
                                        position.batch_in_epoch != 0)) {
    // Stopped mid-epoch by --max-steps (or no per-epoch evaluation): evaluate the final model.
    result.final_eval = evaluate(*test);
    metrics.write({{"type", "epoch"},
                   {"epoch", position.epoch + 1},
                   {"step", position.step},
                   {"test_loss", result.final_eval->loss},
                   {"test_accuracy", result.final_eval->accuracy},
                   {"elapsed_s", seconds_since(start)}});
  }
  result.steps = position.step;
  result.elapsed_seconds = seconds_since(start);
  if (rank() == 0 && !o.plot_file().empty() && !o.metrics_file().empty()) {
    write_plot_from_metrics(o.metrics_file(), o.plot_file());
    DPT_LOG_INFO("plot written to {}", o.plot_file());
  }
  for (auto& callback : callbacks_) callback->on_train_end(result);
  return result;
}

}  // namespace dpt
