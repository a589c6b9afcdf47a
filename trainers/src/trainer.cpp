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
#include "fit_loop.h"
#include "loss_tracker.h"
#include "run_state.h"
#include "trainer_state.h"

namespace dpt {
namespace {

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
  check_model_fits(train.first_samples(2), train.largest_label());
  return FitLoop(*this, train, test).run();
}

}  // namespace dpt
