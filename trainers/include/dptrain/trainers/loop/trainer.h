// dpt::Trainer: the data-parallel training loop of dptrain (what a PyTorch DDP script writes by
// hand, as one object).
//
//   dpt::Trainer trainer(model, world, dpt::TrainerOptions()
//                                         .epochs(3).batch_size(64)
//                                         .optimizer(dpt::OptimizerOptions().name("adam").lr(1e-3))
//                                         .checkpoint_dir("ckpt").metrics_file("metrics.jsonl"));
//   dpt::TrainResult result = trainer.fit(train_data, &test_data);
//
// Data sharding (the DistributedSampler contract): each epoch the N training samples are permuted
// with a generator seeded by seed + epoch (identity order with shuffle(false)); rank r of W takes
// permutation positions r, r+W, r+2W, ... One optimizer step consumes accumulation_steps
// micro-batches of batch_size samples on every rank, i.e. the global batch
// G = W * batch_size * accumulation_steps, which is exactly permutation positions [s*G, (s+1)*G):
// W ranks at batch B and one process at batch W*B see the same samples per step, and because the
// gradients of the per-rank mean losses are averaged over ranks, take the same SGD step. Samples
// that do not fill a last global batch are dropped (drop_last), so every rank takes the same
// number of steps.
//
// Gradient synchronisation is dpt::DistributedDataParallel's (parameters broadcast from rank 0 at
// start, bucketed all-reduce overlapped with backward, no_sync() for all but the last micro-batch
// of an accumulation).
//
// The loss of every step is all-reduced (one 2-element collective): the logged loss is the global
// mean, and a NaN/Inf loss on any rank stops all ranks together with NumericalError (or, with
// skip_nonfinite_loss, every rank skips that step), never leaving a rank waiting in a collective.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/core/data/dataset.h"
#include "dptrain/core/data/transforms.h"
#include "dptrain/core/model.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/trainers/optim/optim.h"
#include "dptrain/trainers/data/train_source.h"

namespace dpt {

class LossTracker;  // private (trainers/src/loop/loss_tracker.h)

// The model's forward as a step function sees it.
using ForwardFn = std::function<torch::Tensor(const torch::Tensor& inputs)>;
using TrainingStepFn =
    std::function<torch::Tensor(const ForwardFn& forward, const torch::Tensor& inputs, const torch::Tensor& targets)>;
using ValidationStepFn = std::function<std::map<std::string, torch::Tensor>(
    const ForwardFn& forward, const torch::Tensor& inputs, const torch::Tensor& targets)>;

struct TrainerOptions {
  TORCH_ARG(int64_t, epochs) = 3;
  TORCH_ARG(int64_t, max_steps) = 0;  // > 0: stop after this many optimizer steps in total
  // > 0: stop after this many steps *of this run* without changing the planned schedule (a
  // checkpoint is written first when checkpoint_dir is set); continue later with resume.
  TORCH_ARG(int64_t, stop_after_steps) = 0;
  TORCH_ARG(int64_t, batch_size) = 64;  // per rank, per micro-batch
  TORCH_ARG(int64_t, eval_batch_size) = 512;
  TORCH_ARG(int64_t, accumulation_steps) = 1;
  // Preprocessing threads that prepare the next training batches (gather, train_transform, pinned
  // memory for CUDA) while the model computes; 0 prepares each batch inline. Never holds the model.
  TORCH_ARG(int, workers) = 0;
  TORCH_ARG(int, prefetch_batches) = 0;  // batches prepared ahead; 0 means 2 * workers
  // Per-sample training transform (augmentation), run on the workers with SampleRng(seed, epoch,
  // sample index): the same batches for any number of workers or ranks. Unset: none.
  TORCH_ARG(Transform, train_transform);
  TORCH_ARG(OptimizerOptions, optimizer);
  TORCH_ARG(LrScheduleOptions, schedule);
  TORCH_ARG(double, grad_clip_norm) = 0.0;  // > 0: clip the global gradient norm
  // ZeRO stage: 0 off; 1 each rank keeps the optimizer state of 1/world of the parameters; 2 also
  // only 1/world of the gradient between steps (dpt::ShardedOptimizer: gradients reduce-scattered
  // during backward, shards all-gathered after the step; docs/ddp.md). No effect on one rank.
  TORCH_ARG(int, zero_stage) = 0;
  // How DDP all-reduces gradients across machines: "auto" - hierarchical (dpt::HierarchicalAllreduce:
  // within each host, then across hosts) when the job spans several hosts with several ranks each
  // placed round-robin (not in consecutive blocks), else flat; "flat" - one all-reduce over all
  // ranks; "hierarchical" - whenever the job spans several hosts with several ranks each.
  TORCH_ARG(std::string, allreduce) = "auto";
  // DDP's gradient bucket size in MB ("25", PyTorch's default), or "auto": chosen after two steps
  // from the model's gradient timing and a measured all-reduce cost curve (docs/ddp.md,
  // "Buckets that size themselves").
  TORCH_ARG(std::string, bucket_cap) = "25";
  // Step the optimizer inside backward, one gradient bucket at a time as each bucket's all-reduce
  // completes, behind the buckets still on the wire (docs/ddp.md, "The optimizer behind the wire").
  // Not with what needs the whole gradient first (grad_clip_norm, fp16 loss scaling,
  // skip_nonfinite_loss) nor with zero_stage > 0 or a compiled package; one rank steps as usual.
  TORCH_ARG(bool, overlap_optimizer) = false;
  // What DDP sends instead of the gradients (a comm hook): "none"; "fp16" / "bf16" - the gradients
  // cast to 16 bits (half the bytes); "powersgd" - dpt::PowerSgd, rank-`powersgd_rank`
  // approximations with error feedback, the plain all-reduce for the first `powersgd_start` steps
  // (docs/cluster.md). Not with zero_stage > 0 or a hierarchical all-reduce.
  TORCH_ARG(std::string, comm_hook) = "none";
  TORCH_ARG(int64_t, powersgd_rank) = 1;
  TORCH_ARG(int64_t, powersgd_start) = 10;
  TORCH_ARG(bool, mixed_precision) = false;  // CUDA only: autocast(fp16) + dynamic loss scaling
  // "fp32"; "bf16": forward and loss under bf16 autocast on the training device (CPU or CUDA),
  // master weights, gradients and optimizer state in fp32, no loss scaling (bf16 has fp32's
  // range); "fp16": mixed_precision (CUDA). Checkpoints and saved models stay fp32.
  TORCH_ARG(std::string, precision) = "fp32";
  // Model FLOP utilisation for token data: the model's FLOPs per token trained (forward and
  // backward: 6N plus attention for a transformer) and one device's peak in TFLOP/s; MFU =
  // tokens/s per rank x flops_per_token / peak, reported beside tokens/s when both are > 0.
  TORCH_ARG(double, flops_per_token) = 0.0;
  TORCH_ARG(double, peak_tflops) = 0.0;
  TORCH_ARG(bool, shuffle) = true;
  TORCH_ARG(int64_t, seed) = 0;
  // cross_entropy | nll (class targets) | mse | l1 | smooth_l1 | bce_with_logits; see task.h
  TORCH_ARG(std::string, loss) = "cross_entropy";
  // cross_entropy: PyTorch's label_smoothing, in [0, 1) (0: off); training and evaluation loss alike.
  TORCH_ARG(double, label_smoothing) = 0.0;
  // > 1: evaluation also reports the top-k accuracy of class targets (a label among the k highest
  // scores); 0: off.
  TORCH_ARG(int64_t, top_k) = 0;
  // cross_entropy / nll: targets equal to this are left out of the loss (PyTorch's ignore_index),
  // e.g. the padding of a language model's windows.
  TORCH_ARG(int64_t, ignore_index) = -100;
  // The C++ form of a TorchScript model's training_step / validation_step (they win over the
  // model's methods and over `loss`): called with the training forward (through DDP when
  // distributed) and a batch; return the loss / metrics averaged over the batch's samples.
  TORCH_ARG(TrainingStepFn, training_step);
  TORCH_ARG(ValidationStepFn, validation_step);
  TORCH_ARG(bool, skip_nonfinite_loss) = false;
  TORCH_ARG(bool, eval_each_epoch) = true;
  // > 0: also evaluate every N optimizer steps (--eval-every), as Lightning's val_check_interval.
  TORCH_ARG(int64_t, eval_every_steps) = 0;
  // Early stopping (Lightning's EarlyStopping): > 0 ends the run once `early_stopping_metric` has
  // not improved for this many evaluations in a row; 0: off. The metric: test_loss, test_accuracy
  // or val_<name>; lower is better for a name with "loss" in it, higher otherwise.
  TORCH_ARG(int64_t, early_stopping_patience) = 0;
  TORCH_ARG(std::string, early_stopping_metric) = "test_loss";
  // Non-empty: also keep the checkpoint of the best evaluation of this metric (the names as for
  // early stopping) as checkpoint_dir/best.pt, as Lightning's ModelCheckpoint(monitor=...).
  TORCH_ARG(std::string, keep_best) = "";
  TORCH_ARG(std::string, checkpoint_dir) = "";
  TORCH_ARG(int64_t, checkpoint_every_steps) = 0;  // 0: at the end of each epoch only
  TORCH_ARG(int, keep_checkpoints) = 3;
  TORCH_ARG(std::string, resume) = "";  // "" none, "latest" (newest in checkpoint_dir) or a file
  TORCH_ARG(std::string, metrics_file) = "";  // JSON lines, rank 0; appended to on resume
  // A metrics write that fails (a full disk) ends the run with an IoError naming the file; when
  // optional (a default file nobody asked for), it is reported once and the run goes on without it.
  TORCH_ARG(bool, metrics_optional) = false;
  // TensorBoard event files here (rank 0): loss, lr, evaluation, samples/s, step time, exposed
  // communication (tensorboard.h). Curves as a picture: python/dptrain_plot.py on metrics_file.
  TORCH_ARG(std::string, tensorboard_dir) = "";
  // A progress bar on rank 0 when stderr is an interactive terminal (never in logs to files).
  TORCH_ARG(bool, progress_bar) = true;
  TORCH_ARG(int64_t, log_every_steps) = 100;
  // A rank is named a straggler when its busy time per step (the step minus its wait for gradient
  // communication) is at least this many times the other ranks' median for 3 log intervals in a
  // row (docs/trainer.md, "The slow rank"). Every log interval reports the spread regardless.
  TORCH_ARG(double, straggler_threshold) = 1.2;
  TORCH_ARG(torch::Device, device) = torch::Device(torch::kCPU);
};

// Checks ranges and names ("--batch-size must be > 0, got 0"); InvalidArgumentError. Files only
// rank 0 reads (a --resume checkpoint) are looked for when `reads_rank0_files`: the other ranks of
// a job need not see rank 0's file system.
void validate(const TrainerOptions& options, bool reads_rank0_files = true);
// Whether `name` is one of TrainerOptions::loss's names.
bool is_known_loss(const std::string& name);

struct EvalResult {
  double loss = NAN;                      // mean loss per sample over the split (all ranks); NaN when
                                          // validation_step reports no "loss"
  std::optional<double> accuracy;         // fraction in [0, 1], for class targets (cross_entropy, nll)
  std::optional<double> top_k_accuracy;   // the same with the label among the top_k highest scores
  int64_t top_k = 0;
  int64_t samples = 0;
  std::map<std::string, double> metrics;  // validation_step's, each averaged over the samples
  // A language model's (scores [B, T, V]): exp(loss), the loss being the mean per token.
  std::optional<double> perplexity;
};

// "test loss 0.2214, test accuracy 91.86%, val mae 0.3512": an evaluation in one phrase.
std::string describe(const EvalResult& eval);

struct StepInfo {
  int64_t epoch = 0;
  int64_t step = 0;  // optimizer steps taken so far (this one included)
  // Global mean loss of this step at log steps (every --log-every steps, and step 1); NaN at
  // other steps. Reading the loss needs the step's GPU work finished and a collective: doing that
  // every step would stall the GPU pipeline. `local_loss` is this rank's loss as a 0-dim tensor on
  // the training device (reading it waits for the step).
  double loss = 0.0;
  torch::Tensor local_loss;
  double lr = 0.0;
  bool skipped = false;  // non-finite loss or gradients: no update
  // Host seconds this rank's step waited for gradient buckets after its backward (communication
  // that backward did not hide); NaN on one rank.
  double exposed_comm_s = NAN;
};

struct EpochInfo {
  int64_t epoch = 0;
  int64_t step = 0;
  double train_loss = 0.0;  // mean of the step losses of this epoch
  std::optional<EvalResult> eval;
  double elapsed_seconds = 0.0;
};

struct TrainResult {
  int64_t steps = 0;
  int64_t epochs_completed = 0;
  std::optional<EvalResult> final_eval;
  double elapsed_seconds = 0.0;
  bool stopped_early = false;  // stop_after_steps or a stop request ended this run before the plan
  // A signal asked the job to stop (dpt::StopRequest); the checkpoint was written at that step.
  bool stopped_on_request = false;
  // Early stopping ended the run (the plan is not resumed: the run is done).
  bool stopped_by_early_stopping = false;
};

// Hooks into the loop; called on every rank (log or write on rank 0 only if that matters).
class TrainerCallback {
 public:
  virtual ~TrainerCallback() = default;
  virtual void on_train_begin(int64_t /*start_step*/) {}
  virtual void on_step_end(const StepInfo& /*info*/) {}
  virtual void on_epoch_end(const EpochInfo& /*info*/) {}
  virtual void on_train_end(const TrainResult& /*result*/) {}
};

class Trainer {
 public:
  // `world` may be null for a single process. Every rank passes the same options and a model
  // built the same way (DDP broadcasts rank 0's parameters; a different architecture is a
  // ModelError naming the ranks).
  Trainer(Model model, CommunicatorPtr world, TrainerOptions options);
  ~Trainer();

  void add_callback(std::shared_ptr<TrainerCallback> callback);

  // Trains on `train` (a TensorDataset is batched without copies per example) and evaluates on
  // `test` after each epoch and at the end when given. Resumes first when options.resume is set.
  TrainResult fit(const Dataset& train, const Dataset* test = nullptr);
  // The same from any source of training micro-batches (a stream of tensor-file shards, ...; see
  // train_source.h); options().shuffle/seed/train_transform are the source's own business there.
  TrainResult fit(const TrainSource& train, const Dataset* test = nullptr);


  // Loss and accuracy on `data`, each rank scoring positions rank, rank+W, ...; reduced over ranks.
  EvalResult evaluate(const Dataset& data);

  // The model's outputs for every sample of `data`, each rank scoring its shard; gathered to rank 0
  // in the original sample order. Other ranks get an undefined tensor.
  torch::Tensor predict(const Dataset& data);

  // Checks that the model maps a batch of `data` to [N, C] logits with C > the largest label:
  // ModelError naming both shapes otherwise. fit() calls it first.
  void check_model_fits(const Dataset& data);
  // The same from a batch of samples; `max_label`: the largest label when known, else the batch's.
  void check_model_fits(const std::pair<Tensors, Tensors>& samples, std::optional<int64_t> max_label);

  Model& model() { return model_; }
  const TrainerOptions& options() const { return options_; }
  int rank() const;
  int world_size() const;

 private:
  friend class FitLoop;  // trainers/src/loop/fit_loop.h: the epoch loop of fit()
  struct Internals;  // loop/trainer_internals.h
  struct ReducedSums {
    std::vector<std::string> names;
    std::vector<double> sums;
    double count = 0;
  };
  // This rank's named evaluation sums and sample count, summed over the ranks (collective; ranks
  // without samples take the others' names).
  ReducedSums reduce_evaluation(const std::vector<std::string>& names, const std::vector<torch::Tensor>& sums,
                                int64_t count);
  // One optimizer step over options.accumulation_steps() micro-batches from `next_micro_batch`.
  StepInfo train_step(const std::function<std::pair<Tensors, Tensors>()>& next_micro_batch,
                      LossTracker& losses);
  Model model_;
  CommunicatorPtr world_;
  TrainerOptions options_;
  std::vector<std::shared_ptr<TrainerCallback>> callbacks_;
  std::unique_ptr<Internals> internals_;
  int64_t position_step_ = 0;  // optimizer steps taken before the one train_step is taking
};

// What a training source takes from the trainer's options (and fit(const Dataset&) gives its
// IndexedSource): shuffle, seed, the per-sample transform, pinned batches when training on CUDA.
SourceOptions source_options(const TrainerOptions& options);

// Rank 0 runs `produce` (e.g. reads a file); every rank returns rank 0's bytes, or throws the
// same error rank 0 met (kind and message), so no rank is left waiting in a broadcast. This is how
// only rank 0 reads model files and checkpoints: clusters often have no shared file system.
Bytes bytes_from_rank0(const CommunicatorPtr& world, const std::function<Bytes()>& produce);

// Batches `indices` of `data` into one (inputs, targets) pair (each a tensor or a tuple of them):
// index_select for a TensorDataset, get() + stack otherwise.
std::pair<Tensors, Tensors> gather_batch(const Dataset& data, const torch::Tensor& indices);

}  // namespace dpt
