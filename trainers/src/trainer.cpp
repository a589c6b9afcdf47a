#include "dptrain/trainers/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>

#include "dptrain/core/data/preprocess_pool.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/trainers/checkpoint.h"
#include "gradient_sync.h"
#include "dptrain/trainers/plot.h"

namespace dpt {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Dynamic loss scaling for fp16 autocast (torch.cuda.amp.GradScaler's rule): multiply the loss by
// `scale`; unscale the gradients before clipping/stepping; on Inf/NaN gradients skip the step and
// halve the scale; after `growth_interval` clean steps double it.
struct LossScaler {
  bool enabled = false;
  double scale = 65536.0;
  int64_t clean_steps = 0;
  int64_t growth_interval = 2000;

  // Unscales in place; returns true when every gradient is finite.
  bool unscale(const std::vector<torch::Tensor>& parameters) {
    if (!enabled) return true;
    std::vector<torch::Tensor> grads;
    for (const auto& p : parameters) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    if (grads.empty()) return true;
    auto found_inf = torch::zeros({1}, grads.front().options().dtype(torch::kFloat));
    auto inverse = torch::full({1}, 1.0 / scale, found_inf.options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inverse);
    return found_inf.item<float>() == 0.0f;
  }

  void update(bool finite) {
    if (!enabled) return;
    if (!finite) {
      scale *= 0.5;
      clean_steps = 0;
    } else if (++clean_steps >= growth_interval) {
      scale *= 2.0;
      clean_steps = 0;
    }
  }
};

// Where a run is: the checkpointed position.
struct Position {
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;  // optimizer steps taken in `epoch`
  int64_t step = 0;            // optimizer steps in total
  // Samples of epoch `epoch`'s permutation consumed before this run's world size took over (set
  // on a resume at a different world size; 0 otherwise).
  int64_t epoch_offset = 0;
};

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

// This rank's positions of an epoch: permutation[offset + rank :: world].
torch::Tensor shard_indices(int64_t size, bool shuffle, int64_t seed, int64_t epoch, int64_t offset, int rank,
                            int world) {
  torch::Tensor order;
  if (shuffle) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed + epoch));
    order = torch::randperm(size, generator, torch::TensorOptions().dtype(torch::kLong));
  } else {
    order = torch::arange(size, torch::kLong);
  }
  if (offset >= size) return torch::empty({0}, torch::kLong);
  return order.slice(0, offset + rank, size, world);
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
  model_.to(options_.device());
  state_->sync = std::make_unique<GradientSync>(model_, world_);
  state_->optimizer = make_optimizer(model_.parameters(), options_.optimizer());
  state_->scaler.enabled = options_.mixed_precision();
}

Trainer::~Trainer() = default;

int Trainer::rank() const { return world_ ? world_->rank() : 0; }
int Trainer::world_size() const { return world_ ? world_->size() : 1; }

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) { callbacks_.push_back(std::move(callback)); }

namespace {

// The examples at `indices`, each passed through `map(example, dataset index)`, stacked.
std::pair<torch::Tensor, torch::Tensor> stack_examples(const Dataset& data, const torch::Tensor& indices,
                                                       const std::function<Example(Example, int64_t)>& map) {
  std::vector<torch::Tensor> inputs, targets;
  auto accessor = indices.accessor<int64_t, 1>();
  for (int64_t i = 0; i < indices.size(0); ++i) {
    Example example = map(data.get(accessor[i]), accessor[i]);
    inputs.push_back(example.input);
    targets.push_back(example.target);
  }
  return {torch::stack(inputs), torch::stack(targets)};
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> gather_batch(const Dataset& data, const torch::Tensor& indices) {
  if (auto tensors = dynamic_cast<const TensorDataset*>(&data)) {
    return {tensors->inputs().index_select(0, indices), tensors->targets().index_select(0, indices)};
  }
  return stack_examples(data, indices, [](Example example, int64_t) { return example; });
}

namespace {

// One training micro-batch as the pool's workers prepare it: the samples at `indices`, each through
// `transform` (seeded per sample, so any worker count gives the same batch), pinned for a CUDA copy.
std::pair<torch::Tensor, torch::Tensor> prepare_train_batch(const Dataset& data, const torch::Tensor& indices,
                                                            const Transform& transform, uint64_t seed, int64_t epoch,
                                                            bool pin) {
  auto batch = !transform ? gather_batch(data, indices)
                          : stack_examples(data, indices, [&](Example example, int64_t index) {
                              SampleRng rng(seed, epoch, index);
                              return transform(std::move(example), rng);
                            });
  if (pin) batch = {batch.first.pin_memory(), batch.second.pin_memory()};
  return batch;
}

}  // namespace

void Trainer::check_model_fits(const Dataset& data) {
  DPT_CHECK(data.size() > 0, DataError, "the dataset is empty");
  auto [inputs, targets] = gather_batch(data, torch::arange(std::min<int64_t>(2, data.size()), torch::kLong));
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
  int64_t max_label = 0;
  if (auto tensors = dynamic_cast<const TensorDataset*>(&data)) max_label = tensors->targets().max().item<int64_t>();
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
  auto indices = shard_indices(data.size(), false, 0, 0, 0, rank(), world_size());
  double loss_sum = 0.0, correct = 0.0, count = 0.0;
  for (int64_t begin = 0; begin < indices.size(0); begin += options_.eval_batch_size()) {
    auto [inputs, targets] = gather_batch(data, indices.slice(0, begin, begin + options_.eval_batch_size()));
    inputs = inputs.to(options_.device());
    targets = targets.to(options_.device());
    auto logits = model_.forward(inputs);
    loss_sum += loss_of(options_.loss(), logits, targets, /*sum=*/true).item<double>();
    correct += logits.argmax(1).eq(targets).sum().item<double>();
    count += static_cast<double>(targets.size(0));
  }
  auto totals = torch::tensor({loss_sum, correct, count}, torch::kDouble);
  if (world_size() > 1) world_->allreduce(totals);
  model_.train(was_training);
  EvalResult result;
  result.samples = static_cast<int64_t>(totals[2].item<double>());
  DPT_CHECK(result.samples > 0, DataError, "evaluation on an empty dataset");
  result.loss = totals[0].item<double>() / result.samples;
  result.accuracy = totals[1].item<double>() / result.samples;
  return result;
}

torch::Tensor Trainer::predict(const Dataset& data) {
  bool was_training = model_.is_training();
  model_.eval();
  torch::NoGradGuard no_grad;
  auto indices = shard_indices(data.size(), false, 0, 0, 0, rank(), world_size());
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < indices.size(0); begin += options_.eval_batch_size()) {
    auto [inputs, targets] = gather_batch(data, indices.slice(0, begin, begin + options_.eval_batch_size()));
    chunks.push_back(model_.forward(inputs.to(options_.device())).to(torch::kCPU));
  }
  model_.train(was_training);
  torch::Tensor local = chunks.empty() ? torch::empty({0}) : torch::cat(chunks);
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

TrainResult Trainer::fit(const Dataset& train, const Dataset* test) {
  auto start = Clock::now();
  const int world = world_size();
  const auto& o = options_;
  check_model_fits(train);

  const int64_t global_batch = static_cast<int64_t>(world) * o.batch_size() * o.accumulation_steps();
  DPT_CHECK(train.size() >= global_batch, InvalidArgumentError, "the training set has ", train.size(),
            " samples, fewer than one global batch (", world, " ranks x --batch-size ", o.batch_size(),
            " x --accumulation-steps ", o.accumulation_steps(), " = ", global_batch, ")");
  int64_t steps_per_epoch = train.size() / global_batch;
  int64_t planned_steps = steps_per_epoch * o.epochs();
  if (o.max_steps() > 0) planned_steps = std::min(planned_steps, o.max_steps());
  LrSchedule schedule(o.schedule(), o.optimizer().lr(), planned_steps);
  auto& optimizer = *state_->optimizer;
  auto parameters = model_.parameters();

  // --- resume --------------------------------------------------------------------------------
  Position position;
  bool resumed = false;
  if (!o.resume().empty()) {
    std::string chosen;
    Bytes bytes = bytes_from_rank0(world_, [&] { return read_checkpoint_file(o.resume(), o.checkpoint_dir(), chosen); });
    std::string origin = rank() == 0 ? chosen : "checkpoint received from rank 0";
    Checkpoint checkpoint = decode_checkpoint(bytes, origin);
    model_.load_state_dict(checkpoint.model);
    load_optimizer_state(optimizer, checkpoint.optimizer, origin);
    if (checkpoint.rng_state.defined()) {
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(checkpoint.rng_state);
    }
    auto extra = nlohmann::json::parse(checkpoint.extra_json);
    state_->scaler.scale = extra.value("loss_scale", state_->scaler.scale);
    state_->scaler.clean_steps = extra.value("loss_scale_clean_steps", int64_t{0});
    int64_t old_offset = extra.value("epoch_offset", int64_t{0});
    int64_t old_global_batch = extra.value("global_batch", global_batch);
    position.epoch = checkpoint.epoch;
    position.step = checkpoint.step;
    DPT_CHECK(checkpoint.seed == o.seed(), InvalidArgumentError, "--seed ", o.seed(), " differs from the seed ",
              checkpoint.seed, " of checkpoint ", origin, ": the data order would change; pass --seed ",
              checkpoint.seed);
    int64_t consumed = old_offset + checkpoint.batch_in_epoch * old_global_batch;
    if (old_global_batch != global_batch) {
      position.epoch_offset = consumed;
      position.batch_in_epoch = 0;
      DPT_LOG_WARN(
          "checkpoint {} was written by {} rank(s) with a global batch of {}; resuming on {} rank(s) with a global "
          "batch of {}: the data is re-sharded, continuing epoch {} from sample {} of its order",
          origin, checkpoint.world_size, old_global_batch, world, global_batch, position.epoch + 1, consumed);
    } else {
      position.epoch_offset = old_offset;
      position.batch_in_epoch = checkpoint.batch_in_epoch;
    }
    resumed = true;
    DPT_LOG_INFO("resumed from {}: epoch {}, step {}", origin, position.epoch + 1, position.step);
  }

  std::unique_ptr<CheckpointDirectory> checkpoints;
  if (!o.checkpoint_dir().empty()) {
    checkpoints = std::make_unique<CheckpointDirectory>(o.checkpoint_dir(), o.keep_checkpoints());
    if (rank() == 0) checkpoints->prepare();
  }
  MetricsWriter metrics(rank() == 0 ? o.metrics_file() : "", resumed);

  auto save_checkpoint = [&]() {
    if (!checkpoints) return;
    state_->sync->sync_buffers();
    if (rank() != 0) return;
    Checkpoint checkpoint;
    checkpoint.epoch = position.epoch;
    checkpoint.batch_in_epoch = position.batch_in_epoch;
    checkpoint.step = position.step;
    checkpoint.world_size = world;
    checkpoint.seed = o.seed();
    checkpoint.model = model_.state_dict();
    checkpoint.optimizer = save_optimizer_state(optimizer);
    checkpoint.rng_state = at::detail::getDefaultCPUGenerator().get_state();
    checkpoint.extra_json = nlohmann::json{{"loss_scale", state_->scaler.scale},
                                           {"loss_scale_clean_steps", state_->scaler.clean_steps},
                                           {"epoch_offset", position.epoch_offset},
                                           {"global_batch", global_batch}}
                                .dump();
    std::string path = checkpoints->write(checkpoint);
    DPT_LOG_INFO("checkpoint {} written (epoch {}, step {})", path, position.epoch + 1, position.step);
  };

  for (auto& callback : callbacks_) callback->on_train_begin(position.step);
  DPT_LOG_INFO("training: {} samples, {} rank(s) x batch {} x accumulation {} = global batch {}, {} steps/epoch, "
               "{} epochs, {} planned steps",
               train.size(), world, o.batch_size(), o.accumulation_steps(), global_batch, steps_per_epoch, o.epochs(),
               planned_steps);

  TrainResult result;
  model_.train();
  int64_t steps_this_run = 0;
  PreprocessPool pool(o.workers(), o.prefetch_batches());
  const bool pin = o.device().is_cuda() && torch::cuda::is_available();
  bool finished = position.step >= planned_steps;
  for (; !finished && position.epoch < o.epochs(); ++position.epoch) {
    auto epoch_start = Clock::now();
    auto indices = shard_indices(train.size(), o.shuffle(), o.seed(), position.epoch, position.epoch_offset, rank(),
                                 world);
    int64_t epoch_steps = (train.size() - position.epoch_offset) / global_batch;
    double epoch_loss_sum = 0.0;
    int64_t epoch_loss_count = 0;
    // The rest of this epoch's micro-batches, in the order the loop below takes them, prepared
    // ahead on the pool; leaving the epoch early (stop, error) cancels the stream.
    const int64_t first_micro = position.batch_in_epoch * o.accumulation_steps();
    auto micro_batches = pool.map<std::pair<torch::Tensor, torch::Tensor>>(
        std::max<int64_t>(0, epoch_steps * o.accumulation_steps() - first_micro),
        [&train, &o, indices, first_micro, pin, epoch = position.epoch](int64_t k) {
          const int64_t first = (first_micro + k) * o.batch_size();
          return prepare_train_batch(train, indices.slice(0, first, first + o.batch_size()), o.train_transform(),
                                     static_cast<uint64_t>(o.seed()), epoch, pin);
        });
    for (; position.batch_in_epoch < epoch_steps; ++position.batch_in_epoch) {
      double lr = schedule.lr_at(position.step);
      set_learning_rate(optimizer, lr);
      optimizer.zero_grad();
      double local_loss = 0.0;
      for (int64_t micro = 0; micro < o.accumulation_steps(); ++micro) {
        auto prepared = micro_batches.next();
        DPT_ASSERT(prepared.has_value(), "the preprocessing stream ended before epoch ", position.epoch + 1);
        auto [inputs, targets] = std::move(*prepared);
        inputs = inputs.to(o.device(), /*non_blocking=*/true);
        targets = targets.to(o.device(), /*non_blocking=*/true);
        bool last_micro = micro + 1 == o.accumulation_steps();
        GradientSync::Scope scope(*state_->sync, /*synchronize=*/last_micro);
        torch::Tensor loss;
        if (o.mixed_precision()) {
          at::autocast::set_autocast_enabled(at::kCUDA, true);
          at::autocast::increment_nesting();
          try {
            loss = loss_of(o.loss(), state_->sync->forward(inputs), targets, /*sum=*/false);
          } catch (...) {
            at::autocast::decrement_nesting();
            at::autocast::set_autocast_enabled(at::kCUDA, false);
            throw;
          }
          if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
          at::autocast::set_autocast_enabled(at::kCUDA, false);
        } else {
          loss = loss_of(o.loss(), state_->sync->forward(inputs), targets, /*sum=*/false);
        }
        local_loss += loss.item<double>() / o.accumulation_steps();
        auto scaled = loss / static_cast<double>(o.accumulation_steps());
        if (state_->scaler.enabled) scaled = scaled * state_->scaler.scale;
        scaled.backward();
      }
      state_->sync->finish();
      // Global loss and a non-finite flag in one collective: every rank takes the same decision.
      auto reduced = torch::tensor({std::isfinite(local_loss) ? local_loss : 0.0, std::isfinite(local_loss) ? 0.0 : 1.0},
                                   torch::kDouble);
      if (world > 1) world_->allreduce(reduced);
      bool loss_finite = reduced[1].item<double>() == 0.0;
      double global_loss = reduced[0].item<double>() / world;
      StepInfo info;
      info.epoch = position.epoch;
      info.lr = lr;
      info.loss = loss_finite ? global_loss : NAN;
      if (!loss_finite) {
        DPT_CHECK(o.skip_nonfinite_loss(), NumericalError, "the loss is NaN or Inf at step ", position.step + 1,
                  " (epoch ", position.epoch + 1, ") on ", static_cast<int64_t>(reduced[1].item<double>()),
                  " rank(s); lower --lr, or pass --skip-nonfinite-loss to skip such steps");
        DPT_LOG_WARN("step {}: non-finite loss, step skipped (--skip-nonfinite-loss)", position.step + 1);
        info.skipped = true;
      } else {
        bool grads_finite = state_->scaler.unscale(parameters);
        state_->scaler.update(grads_finite);
        if (grads_finite) {
          if (o.grad_clip_norm() > 0) torch::nn::utils::clip_grad_norm_(parameters, o.grad_clip_norm());
          optimizer.step();
        } else {
          info.skipped = true;
          DPT_LOG_DEBUG("step {}: Inf/NaN gradients under loss scale, scale now {}", position.step + 1,
                        state_->scaler.scale);
        }
        epoch_loss_sum += global_loss;
        ++epoch_loss_count;
      }
      ++position.step;
      ++steps_this_run;
      info.step = position.step;
      for (auto& callback : callbacks_) callback->on_step_end(info);
      if (o.log_every_steps() > 0 && (position.step % o.log_every_steps() == 0 || position.step == 1)) {
        DPT_LOG_INFO("epoch {} step {} ({}/{}): loss {:.4f} lr {:.3g}", position.epoch + 1, position.step,
                     position.batch_in_epoch + 1, epoch_steps, info.loss, lr);
        metrics.write({{"type", "step"},
                       {"epoch", position.epoch + 1},
                       {"step", position.step},
                       {"loss", info.skipped && !loss_finite ? nlohmann::json(nullptr) : nlohmann::json(info.loss)},
                       {"lr", lr},
                       {"elapsed_s", seconds_since(start)}});
      }
      bool reached_max = position.step >= planned_steps;
      bool stop_now = o.stop_after_steps() > 0 && steps_this_run >= o.stop_after_steps() && !reached_max;
      bool periodic = o.checkpoint_every_steps() > 0 && position.step % o.checkpoint_every_steps() == 0;
      if (reached_max || stop_now || periodic) {
        ++position.batch_in_epoch;  // the checkpoint points after this step
        if (periodic || stop_now || reached_max) save_checkpoint();
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
    EpochInfo epoch_info;
    epoch_info.epoch = position.epoch;
    epoch_info.step = position.step;
    epoch_info.train_loss = epoch_loss_count ? epoch_loss_sum / epoch_loss_count : NAN;
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
