#include "dptrain/trainers/loop/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <mutex>
#include <optional>

#include "dptrain/core/data/image_folder.h"
#include "dptrain/core/data/preprocess_pool.h"
#include "dptrain/core/data/tensor_dataset.h"
#include "dptrain/core/checked_math.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"
#include "dptrain/trainers/checkpoint/checkpoint.h"
#include "dptrain/trainers/optim/weight_decay_groups.h"
#include "loop/autocast_scope.h"
#include "loop/gradient_sync.h"
#include "loop/loss_scaler.h"
#include "loop/fit_loop.h"
#include "report/progress_bar.h"
#include "loop/loss_tracker.h"
#include "checkpoint/run_checkpoint.h"
#include "loop/trainer_internals.h"

namespace dpt {
namespace {

// The one line of a libtorch / TorchScript error that says what went wrong: TorchScript interpreter
// errors end with "RuntimeError: <reason>" after a long traceback; c10 errors start with it.
std::string short_reason(const std::exception& error) {
  auto c10_error = dynamic_cast<const c10::Error*>(&error);
  return one_line_reason(c10_error ? c10_error->what_without_backtrace() : error.what());
}

// --bucket-cap as a number of MB (every value but "auto").
double bucket_cap_mb(const std::string& text) {
  size_t used = 0;
  double mb = 0;
  try {
    mb = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DPT_CHECK(used == text.size() && used > 0 && std::isfinite(mb) && mb > 0, InvalidArgumentError,
            "--bucket-cap must be a size in MB > 0 or auto, got '", text, "'");
  return mb;
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

void validate(const TrainerOptions& o, bool reads_rank0_files) {
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
  checked_mul(o.batch_size(), o.accumulation_steps(), "--batch-size x --accumulation-steps");
  DPT_CHECK(std::isfinite(o.grad_clip_norm()) && o.grad_clip_norm() >= 0, InvalidArgumentError,
            "--clip-grad-norm must be >= 0, got ", o.grad_clip_norm());
  const auto& losses = Task::loss_names();
  DPT_CHECK(std::find(losses.begin(), losses.end(), o.loss()) != losses.end(), InvalidArgumentError,
            "--loss: unknown loss '", o.loss(), "' (choose cross_entropy, nll, mse, l1, smooth_l1 or bce_with_logits)");
  DPT_CHECK(o.seed() >= 0, InvalidArgumentError, "--seed must be >= 0, got ", o.seed());
  DPT_CHECK(o.checkpoint_every_steps() >= 0, InvalidArgumentError, "--checkpoint-every must be >= 0, got ",
            o.checkpoint_every_steps());
  DPT_CHECK(o.keep_checkpoints() >= 1, InvalidArgumentError, "--keep-checkpoints must be >= 1, got ",
            o.keep_checkpoints());
  DPT_CHECK(o.log_every_steps() >= 0, InvalidArgumentError, "--log-every must be >= 0, got ", o.log_every_steps());
  DPT_CHECK(o.straggler_threshold() >= 1, InvalidArgumentError, "--straggler-threshold must be >= 1, got ",
            o.straggler_threshold());
  DPT_CHECK(o.stop_after_steps() == 0 || !o.checkpoint_dir().empty(), InvalidArgumentError,
            "--stop-after-steps needs --checkpoint-dir: the run would stop without saving anything to resume from");
  if (reads_rank0_files && !o.resume().empty() && o.resume() != "latest") {
    DPT_CHECK(!fs::is_directory(o.resume()), InvalidArgumentError, "--resume ", o.resume(),
              " is a directory: pass --checkpoint-dir ", o.resume(), " --resume latest (its newest checkpoint), or "
              "one checkpoint file");
    DPT_CHECK(fs::is_regular_file(o.resume()), InvalidArgumentError, "--resume: checkpoint file ", o.resume(),
              fs::exists(o.resume()) ? " is not a regular file" : " does not exist");
  }
  DPT_CHECK(o.resume() != "latest" || !o.checkpoint_dir().empty(), InvalidArgumentError,
            "--resume latest needs --checkpoint-dir");
  DPT_CHECK(!o.mixed_precision() || o.device().is_cuda(), InvalidArgumentError,
            "--amp (mixed precision) needs a CUDA device; this run is on ", o.device().str());
  DPT_CHECK(o.precision() == "fp32" || o.precision() == "bf16" || o.precision() == "fp16", InvalidArgumentError,
            "--precision must be fp32, bf16 or fp16, got '", o.precision(), "'");
  DPT_CHECK(o.precision() != "fp16" || o.mixed_precision(), InvalidArgumentError,
            "--precision fp16 is mixed_precision (--amp): set both or neither");
  // Output directories are created, as SummaryWriter and Lightning do.
  DPT_CHECK(o.metrics_file().empty() || fs::can_be_created(fs::parent_path(o.metrics_file())), InvalidArgumentError,
            "--metrics ", o.metrics_file(), ": its directory cannot be created (not writable)");
  const auto& tensorboard = o.tensorboard_dir();
  DPT_CHECK(tensorboard.empty() || fs::is_directory(tensorboard) || (!fs::exists(tensorboard) && fs::can_be_created(tensorboard)),
            InvalidArgumentError, "--tensorboard ", tensorboard, ": ",
            fs::exists(tensorboard) ? "exists and is not a directory" : "cannot be created (not writable)");
  DPT_CHECK(o.label_smoothing() >= 0.0 && o.label_smoothing() < 1.0, InvalidArgumentError,
            "--label-smoothing must be in [0, 1), got ", o.label_smoothing());
  DPT_CHECK(o.label_smoothing() == 0.0 || o.loss() == "cross_entropy", InvalidArgumentError,
            "--label-smoothing applies to --loss cross_entropy, not ", o.loss());
  DPT_CHECK(o.top_k() >= 0, InvalidArgumentError, "--top-k must be >= 0, got ", o.top_k());
  DPT_CHECK(o.eval_every_steps() >= 0, InvalidArgumentError, "--eval-every must be >= 0, got ", o.eval_every_steps());
  DPT_CHECK(o.early_stopping_patience() >= 0, InvalidArgumentError, "--early-stopping-patience must be >= 0, got ",
            o.early_stopping_patience());
  MetricMonitor::check_name(o.early_stopping_metric(), "--early-stopping-metric");
  if (!o.keep_best().empty()) {
    MetricMonitor::check_name(o.keep_best(), "--keep-best");
    DPT_CHECK(!o.checkpoint_dir().empty(), InvalidArgumentError, "--keep-best ", o.keep_best(),
              " needs --checkpoint-dir (best.pt is written there)");
  }
  validate(o.optimizer());
  validate(o.schedule());
  if (o.bucket_cap() != "auto") bucket_cap_mb(o.bucket_cap());  // throws naming the option
  DPT_CHECK(o.allreduce() == "auto" || o.allreduce() == "flat" || o.allreduce() == "hierarchical",
            InvalidArgumentError, "--allreduce must be auto, flat or hierarchical, got '", o.allreduce(), "'");
  DPT_CHECK(o.comm_hook() == "none" || o.comm_hook() == "fp16" || o.comm_hook() == "bf16" || o.comm_hook() == "powersgd",
            InvalidArgumentError, "--comm-hook must be none, fp16, bf16 or powersgd, got '", o.comm_hook(), "'");
  DPT_CHECK(o.powersgd_rank() >= 1, InvalidArgumentError, "--powersgd-rank must be >= 1, got ", o.powersgd_rank());
  DPT_CHECK(o.powersgd_start() >= 0, InvalidArgumentError, "--powersgd-start must be >= 0, got ", o.powersgd_start());
  DPT_CHECK(o.comm_hook() == "none" || o.allreduce() != "hierarchical", InvalidArgumentError, "--comm-hook ",
            o.comm_hook(), " and --allreduce hierarchical: both would reduce DDP's buckets; pick one");
  DPT_CHECK(o.comm_hook() == "none" || o.zero_stage() == 0, InvalidArgumentError, "--comm-hook ", o.comm_hook(),
            " and --zero ", o.zero_stage(), ": the sharded optimizer reduce-scatters the gradients itself; pick one");
  DPT_CHECK(o.zero_stage() >= 0 && o.zero_stage() <= 2, InvalidArgumentError, "--zero ", o.zero_stage(),
            ": 0 (off), 1 (optimizer state sharded over the ranks) or 2 (gradients too)");
  if (o.overlap_optimizer()) {
    // Each of these needs the whole averaged gradient before any parameter may move.
    const char* conflict = o.grad_clip_norm() > 0                             ? "--clip-grad-norm (the global norm)"
                           : o.mixed_precision() || o.precision() == "fp16" ? "--amp / --precision fp16 (the loss "
                                                                                "scaler's finite check)"
                           : o.skip_nonfinite_loss()                        ? "--skip-nonfinite-loss"
                           : o.zero_stage() > 0 ? "--zero (the sharded optimizer steps after its own reduce-scatter)"
                                                : nullptr;
    DPT_CHECK(!conflict, InvalidArgumentError, "--overlap-optimizer steps each bucket's parameters as soon as it is "
              "reduced, so it cannot be combined with ", conflict);
  }
  // The sharded optimizer steps flat pieces that cut across parameters, with one weight decay.
  DPT_CHECK(o.optimizer().weight_decay_exclude().empty() || o.zero_stage() == 0, InvalidArgumentError,
            "--weight-decay-exclude and --zero ", o.zero_stage(),
            ": the sharded optimizer has one parameter group (one weight decay for all); drop one of them");
}

Trainer::Trainer(Model model, CommunicatorPtr world, TrainerOptions options)
    : model_(std::move(model)), world_(std::move(world)), options_(std::move(options)), internals_(new Internals) {
  validate(options_, rank() == 0);
  checked_mul(checked_mul(options_.batch_size(), options_.accumulation_steps(), "the global batch"), world_size(),
              "the global batch (--batch-size x --accumulation-steps x ranks)");
  if (model_.is_exported()) {
    const std::string& origin = model_.exported().origin();
    // Where the package's gradients are reduced: the reason each refusal below gives.
    const std::string reduces = model_.exported().gradient_group().empty()
                                    ? " averages its gradients after its compiled step"
                                    : " all-reduces its gradients inside its compiled program";
    DPT_CHECK(!options_.mixed_precision() && options_.precision() == "fp32", UnsupportedError, "--precision ",
              options_.precision(), ": ", origin,
              " computes in the precision it was exported with (export it under autocast instead)");
    DPT_CHECK(!options_.training_step() && !options_.validation_step(), UnsupportedError, origin,
              " is a compiled training step: C++ step functions cannot replace it");
    DPT_CHECK(options_.zero_stage() == 0, UnsupportedError, "--zero ", options_.zero_stage(), ": ", origin, reduces,
              "; sharding its optimizer is not implemented yet");
    DPT_CHECK(options_.bucket_cap() != "auto", UnsupportedError, "--bucket-cap auto: ", origin, reduces,
              ", when nothing is left to overlap: give a size in MB");
    DPT_CHECK(!options_.overlap_optimizer(), UnsupportedError, "--overlap-optimizer: ", origin, reduces,
              ", so there is no reduction left to step behind");
    DPT_CHECK(options_.comm_hook() == "none", UnsupportedError, "--comm-hook ", options_.comm_hook(), ": ", origin, reduces,
              ", without DDP's comm hooks");
  }
  model_.prepare_for_training();
  model_.to(options_.device());
  const auto allreduce = options_.allreduce() == "flat"           ? GradientSync::Allreduce::Flat
                         : options_.allreduce() == "hierarchical" ? GradientSync::Allreduce::Hierarchical
                                                                  : GradientSync::Allreduce::Auto;
  const auto compression = options_.comm_hook() == "fp16"       ? GradientSync::Compression::Fp16
                           : options_.comm_hook() == "bf16"     ? GradientSync::Compression::Bf16
                           : options_.comm_hook() == "powersgd" ? GradientSync::Compression::PowerSgd
                                                                : GradientSync::Compression::None;
  const auto powersgd =
      PowerSgdOptions().rank(options_.powersgd_rank()).start_iteration(options_.powersgd_start()).seed(options_.seed());
  auto buckets = DdpOptions().bucket_cap_auto(options_.bucket_cap() == "auto");
  if (options_.bucket_cap() != "auto") buckets.bucket_cap_mb(bucket_cap_mb(options_.bucket_cap()));
  internals_->sync = std::make_unique<GradientSync>(model_, world_, allreduce, compression, powersgd, buckets);
  internals_->task = Task::of(model_, options_);
  if (options_.zero_stage() > 0 && world_size() > 1) {
    // On GradientSync's DDP (forward, buffers, rank 0's weights), which hands its gradients over:
    // the sharded optimizer reduce-scatters them during backward.
    const auto optimizer_options = options_.optimizer();
    internals_->sharded = std::make_unique<ShardedOptimizer>(
        *internals_->sync->ddp(),
        [optimizer_options](std::vector<torch::Tensor> shard) { return make_optimizer(shard, optimizer_options); },
        ShardingOptions().stage(options_.zero_stage()));
  } else {
    const auto decays = weight_decay_mask(model_, options_.optimizer().weight_decay_exclude());
    if (!decays.empty() && rank() == 0) {
      DPT_LOG_INFO("dptrain weight decay: {} on all parameters but {}", options_.optimizer().weight_decay(),
                   describe_excluded(model_, decays));
    }
    internals_->optimizer = make_optimizer(model_.parameters(), options_.optimizer(), decays);
    if (options_.overlap_optimizer()) internals_->sync->overlap_optimizer(*internals_->optimizer);
  }
  internals_->scaler.enabled = options_.mixed_precision();
}

Trainer::~Trainer() = default;

int Trainer::rank() const { return world_ ? world_->rank() : 0; }
int Trainer::world_size() const { return world_ ? world_->size() : 1; }

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) { callbacks_.push_back(std::move(callback)); }

std::pair<Tensors, Tensors> gather_batch(const Dataset& data, const torch::Tensor& indices) {
  return gather_examples(data, indices);
}

Tensors on_device(const Tensors& tensors, const torch::Device& device) {
  return tensors.map([&device](const torch::Tensor& t) { return t.to(device, /*non_blocking=*/true); });
}

void Trainer::check_model_fits(const Dataset& data) {
  DPT_CHECK(data.size() > 0, DataError, "the dataset is empty");
  if (internals_->task.uses_class_labels()) check_class_labels(data);
  check_model_fits(gather_batch(data, torch::arange(std::min<int64_t>(2, data.size()), torch::kLong)),
                   dpt::largest_label(data));
}

void Trainer::check_model_fits(const std::pair<Tensors, Tensors>& samples, std::optional<int64_t> max_label_known) {
  const auto& [inputs, targets] = samples;
  const bool was_training = model_.is_training();
  model_.eval();
  try {
    torch::NoGradGuard no_grad;
    internals_->task.check(model_, on_device(inputs, options_.device()), on_device(targets, options_.device()),
                       max_label_known);
  } catch (const Error&) {
    model_.train(was_training);
    throw;
  } catch (const std::exception& e) {
    model_.train(was_training);
    DPT_THROW(ModelError, "the model cannot take inputs of shape ", inputs.shapes(), " (targets ", targets.shapes(),
              "): ", short_reason(e));
  }
  model_.train(was_training);
}

EvalResult Trainer::evaluate(const Dataset& data) {
  bool was_training = model_.is_training();
  model_.eval();
  internals_->sync->sync_buffers();
  torch::NoGradGuard no_grad;
  auto indices = evaluation_indices(data.size(), rank(), world_size());
  // Named sums over the samples (the task's), accumulated on the device: no host round trip per
  // batch; then one all-reduce of [count, sums...].
  std::vector<std::string> names;
  std::vector<torch::Tensor> sums;
  int64_t count = 0;
  bool sequences = false;
  const int64_t batches = (indices.size(0) + options_.eval_batch_size() - 1) / options_.eval_batch_size();
  EvaluationBar bar(options_.progress_bar() && rank() == 0, batches);
  for (int64_t begin = 0; begin < indices.size(0); begin += options_.eval_batch_size()) {
    auto [inputs, targets] = gather_batch(data, indices.slice(0, begin, begin + options_.eval_batch_size()));
    inputs = on_device(inputs, options_.device());
    targets = on_device(targets, options_.device());
    // bf16 evaluates as it trains (as LM code wraps both in one autocast); fp16 evaluates in fp32.
    AutocastScope autocast(options_, /*evaluation=*/true);
    auto [batch, batch_sequences] = internals_->task.evaluation_sums(model_, inputs, targets);
    sequences = sequences || batch_sequences;
    if (names.empty()) {
      for (auto& [name, value] : batch) names.push_back(name), sums.push_back(value);
    } else {
      for (size_t k = 0; k < batch.size() && k < sums.size(); ++k) sums[k] = sums[k] + batch[k].second;
    }
    count += inputs.samples();
    bar.step(begin / options_.eval_batch_size() + 1, count);
  }
  model_.train(was_training);
  auto reduced = reduce_evaluation(names, sums, count);
  EvalResult result;
  result.samples = static_cast<int64_t>(reduced.count);
  DPT_CHECK(result.samples > 0, DataError, "evaluation on an empty dataset");
  for (size_t k = 0; k < reduced.names.size(); ++k) {
    const double mean = reduced.sums[k] / reduced.count;
    if (reduced.names[k] == "correct") {
      result.accuracy = mean;
    } else if (reduced.names[k] == "correct_top_k" && !internals_->task.uses_validation_step()) {
      result.top_k_accuracy = mean;
      result.top_k = options_.top_k();
    } else if (!internals_->task.uses_validation_step() && reduced.names[k] == "loss") {
      result.loss = mean;
    } else {
      result.metrics.emplace(reduced.names[k], mean);
      if (reduced.names[k] == "loss") result.loss = mean;
    }
  }
  if (sequences && !std::isnan(result.loss)) result.perplexity = std::exp(result.loss);
  return result;
}

Trainer::ReducedSums Trainer::reduce_evaluation(const std::vector<std::string>& names,
                                                const std::vector<torch::Tensor>& sums, int64_t count) {
  ReducedSums reduced;
  reduced.names = names;
  if (world_size() > 1) {
    // The names travel once, so a rank whose shard was empty still adds zeros in the same order.
    std::string mine;
    for (const auto& name : names) mine += name + "\n";
    for (const auto& bytes : world_->allgather_bytes(Bytes(mine.begin(), mine.end()))) {
      std::string theirs(bytes.begin(), bytes.end());
      if (theirs.empty()) continue;
      if (reduced.names.empty()) {
        for (size_t start = 0, end; (end = theirs.find('\n', start)) != std::string::npos; start = end + 1) {
          reduced.names.push_back(theirs.substr(start, end - start));
        }
        mine = theirs;
      }
      DPT_CHECK(theirs == mine, ModelError, "the ranks' validation_step results have different names");
    }
  }
  const torch::Device device = world_ ? world_->device() : options_.device();
  auto totals = torch::zeros({static_cast<int64_t>(reduced.names.size()) + 1},
                             torch::TensorOptions(torch::kDouble).device(device));
  totals[0] = static_cast<double>(count);
  for (size_t k = 0; k < sums.size(); ++k) totals[static_cast<int64_t>(k) + 1] = sums[k].to(device);
  if (world_size() > 1) world_->allreduce(totals);
  auto host = totals.cpu();
  reduced.count = host[0].item<double>();
  for (size_t k = 0; k < reduced.names.size(); ++k) reduced.sums.push_back(host[static_cast<int64_t>(k) + 1].item<double>());
  return reduced;
}

torch::Tensor Trainer::predict(const Dataset& data) {
  bool was_training = model_.is_training();
  model_.eval();
  torch::NoGradGuard no_grad;
  auto indices = evaluation_indices(data.size(), rank(), world_size());
  std::vector<torch::Tensor> chunks;
  for (int64_t begin = 0; begin < indices.size(0); begin += options_.eval_batch_size()) {
    auto [inputs, targets] = gather_batch(data, indices.slice(0, begin, begin + options_.eval_batch_size()));
    chunks.push_back(Task::outputs(model_, on_device(inputs, options_.device())));
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
torch::Tensor micro_batch_loss(GradientSync& sync, const Task& task, const Tensors& inputs, const Tensors& targets,
                               const TrainerOptions& options) {
  AutocastScope autocast(options);
  return task.training_loss(sync, inputs, targets);
}

}  // namespace

StepInfo Trainer::train_step(const std::function<std::pair<Tensors, Tensors>()>& next_micro_batch,
                             LossTracker& losses) {
  const auto& o = options_;
  auto& scaler = internals_->scaler;
  ShardedOptimizer* sharded = internals_->sharded.get();
  if (sharded) {
    sharded->zero_grad();
  } else {
    internals_->optimizer->zero_grad();
  }
  torch::Tensor step_loss;  // this rank's mean loss, kept on the device
  for (int64_t micro = 0; micro < o.accumulation_steps(); ++micro) {
    auto [inputs, targets] = next_micro_batch();
    inputs = on_device(inputs, o.device());
    targets = on_device(targets, o.device());
    const bool last = micro + 1 == o.accumulation_steps();
    torch::Tensor loss;
    if (model_.is_exported()) {  // forward, loss and backward in one compiled call
      if (micro == 0) internals_->sync->sync_buffers();
      loss = internals_->sync->compiled_step(inputs.tensor("the inputs of a compiled package"),
                                         targets.tensor("the targets of a compiled package"),
                                         1.0 / static_cast<double>(o.accumulation_steps()));
    } else {
      // ZeRO: the sharded optimizer reduce-scatters in the last backward (stage 1) or in every one,
      // keeping only its shard of the gradient (stage 2); DDP never all-reduces.
      const bool sharded_sync = sharded && (last || sharded->stage() == 2);
      std::optional<ShardedOptimizer::NoSyncGuard> local_only;
      if (sharded && !sharded_sync) local_only.emplace(*sharded);
      GradientSync::Scope scope(*internals_->sync, /*synchronize=*/last);
      loss = micro_batch_loss(*internals_->sync, internals_->task, inputs, targets, o);
      auto scaled = loss / static_cast<double>(o.accumulation_steps());
      if (scaler.enabled) scaled = scaled * scaler.scale;
      scaled.backward();
      if (sharded_sync) sharded->finish_backward();
    }
    step_loss = step_loss.defined() ? step_loss + loss.detach() : loss.detach();
  }
  internals_->sync->finish();
  step_loss = step_loss / static_cast<double>(o.accumulation_steps());

  StepInfo info;
  info.local_loss = step_loss;
  info.exposed_comm_s = sharded ? sharded->last_exposed_comm_s() : internals_->sync->exposed_comm_s();
  bool loss_skipped = false;
  if (o.skip_nonfinite_loss() && !losses.finite_everywhere(step_loss)) {
    DPT_LOG_WARN("step {}: non-finite loss, step skipped (--skip-nonfinite-loss)", position_step_ + 1);
    loss_skipped = info.skipped = true;
  } else {
    bool updated = true;
    if (sharded) {
      // Unscaling, the finite check and the global norm over the shards happen inside its step.
      sharded->set_max_grad_norm(o.grad_clip_norm());
      updated = sharded->step(scaler.enabled ? scaler.scale : 1.0);
      scaler.update(updated);
    } else {
      const auto parameters = model_.parameters();
      updated = scaler.unscale(parameters);
      scaler.update(updated);
      if (updated) {
        if (o.grad_clip_norm() > 0) torch::nn::utils::clip_grad_norm_(parameters, o.grad_clip_norm());
        // --overlap-optimizer: DDP stepped it bucket by bucket inside the last backward.
        if (!internals_->sync->optimizer_stepped()) internals_->optimizer->step();
      }
    }
    if (!updated) {
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
  if (internals_->task.uses_class_labels() && train.dataset()) check_class_labels(*train.dataset());
  const TrainBatch first = train.first_samples(2);
  check_model_fits(first, train.largest_label());
  // The evaluation split too, before training rather than after it (another shape, a label the
  // model has no output for).
  if (test) check_model_fits(*test);
  // Windows of token ids [N, T]: a language model's samples, reported as tokens/s too.
  const auto& inputs = first.first;
  const bool tokens = !inputs.is_tuple() && inputs.parts().front().dim() == 2 &&
                      !c10::isFloatingType(inputs.parts().front().scalar_type());
  return FitLoop(*this, train, test, tokens ? inputs.parts().front().size(1) : 0).run();
}

}  // namespace dpt
