#include "loop/fit_loop.h"

#include <cmath>
#include <limits>

#include "dptrain/core/data/preprocess_pool.h"
#include "dptrain/core/checked_math.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/stop_request.h"
#include "loop/trainer_internals.h"

namespace dpt {
namespace {

const char* kNonFiniteAdvice = "lower --lr, or pass --skip-nonfinite-loss to skip such steps";
// Sources whose epochs differ in length are planned epoch by epoch; beyond this many epochs a
// plan needs --max-steps (counting would hold the first step, and a stop request, for minutes).
constexpr int64_t kMaxCountedEpochs = 1000000;

RankLayout layout_of(const Trainer& trainer) {
  const auto& o = trainer.options();
  return RankLayout{trainer.rank(), trainer.world_size(), o.batch_size(), o.accumulation_steps()};
}

// The last optimizer step of the run: the steps already taken (`from.step`, at whatever world
// size took them) plus what is left of the schedule at this run's layout - the rest of
// `from.epoch` and every later epoch - capped by max_steps. A resume at another world size then
// trains exactly the samples that remain. Epochs past the cap are never counted, and sources
// whose epochs all have the same length are counted by one product (a huge --epochs costs nothing).
int64_t plan_steps(const TrainSource& train, const TrainerOptions& o, const RankLayout& layout, const Position& from) {
  DPT_CHECK(train.steps_in_epoch(0, 0, layout) > 0, InvalidArgumentError, "the training set (", train.describe(),
            ") has fewer samples per rank than one global batch needs (", layout.world, " ranks x --batch-size ",
            o.batch_size(), " x --accumulation-steps ", o.accumulation_steps(), " = ", layout.global_batch(), ")");
  const int64_t cap = o.max_steps() > 0 ? o.max_steps() : std::numeric_limits<int64_t>::max();
  const std::string what = "the run's planned steps (--epochs x steps per epoch)";
  int64_t planned = from.step;
  if (from.epoch < o.epochs()) {
    const int64_t left = train.steps_in_epoch(from.epoch, from.epoch_offset, layout) - from.batch_in_epoch;
    planned = checked_add(planned, std::max<int64_t>(0, left), what);
  }
  const int64_t later_epochs = o.epochs() - std::min(from.epoch + 1, o.epochs());
  if (train.same_steps_every_epoch() && later_epochs > 0) {
    const int64_t per_epoch = train.steps_in_epoch(0, 0, layout);
    const int64_t to_cap = planned >= cap ? 0 : cap - planned;  // epochs beyond the cap are not counted
    const int64_t needed = std::min(later_epochs, to_cap / per_epoch + (to_cap % per_epoch != 0 ? 1 : 0));
    planned = checked_add(planned, checked_mul(needed, per_epoch, what), what);
  } else {
    DPT_CHECK(later_epochs <= kMaxCountedEpochs || o.max_steps() > 0, InvalidArgumentError, "--epochs ", o.epochs(),
              ": ", train.describe(), " has epochs of different lengths, counted one by one; pass --max-steps too");
    for (int64_t epoch = from.epoch + 1; epoch < o.epochs() && planned < cap; ++epoch) {
      planned = checked_add(planned, train.steps_in_epoch(epoch, 0, layout), what);
    }
  }
  return std::min(planned, cap);
}

// A checkpoint's position must lie inside this run's schedule and data (a crafted or foreign
// file must not silently train nothing, or read past the epoch).
void check_position(const Position& p, const TrainSource& train, const TrainerOptions& o, const RankLayout& layout,
                    const std::string& origin) {
  DPT_CHECK(p.epoch <= o.epochs(), InvalidArgumentError, "checkpoint ", origin, " is at epoch ", p.epoch + 1,
            ", beyond --epochs ", o.epochs(), ": raise --epochs to train further");
  DPT_CHECK(p.epoch < o.epochs() || (p.batch_in_epoch == 0 && p.epoch_offset == 0), DataError, "checkpoint ", origin,
            " points inside epoch ", p.epoch + 1, " of a ", o.epochs(), "-epoch run");
  DPT_CHECK(o.max_steps() == 0 || p.step <= o.max_steps(), InvalidArgumentError, "checkpoint ", origin,
            " is at step ", p.step, ", beyond --max-steps ", o.max_steps());
  DPT_CHECK(p.epoch_offset <= train.size(), DataError, "checkpoint ", origin, ": its sampler position (sample ",
            p.epoch_offset, " of epoch ", p.epoch + 1, ") is beyond the training set's ", train.size(), " samples");
  if (p.epoch < o.epochs()) {
    const int64_t steps = train.steps_in_epoch(p.epoch, p.epoch_offset, layout);
    DPT_CHECK(p.batch_in_epoch <= steps, DataError, "checkpoint ", origin, ": its sampler position (step ",
              p.batch_in_epoch, " of epoch ", p.epoch + 1, ") is beyond the epoch's ", steps, " steps");
  }
}

}  // namespace

FitLoop::FitLoop(Trainer& trainer, const TrainSource& train, const Dataset* test, int64_t tokens_per_sample)
    : trainer_(trainer),
      options_(trainer.options_),
      train_(train),
      test_(test),
      layout_(layout_of(trainer)),
      checkpoints_(open_checkpoints()),
      run_{trainer.model_,  trainer.internals_->active_optimizer(), trainer.internals_->scaler,
           trainer.world_, options_, layout_.global_batch(), train.resumes_exactly_at_other_world_sizes(),
           &schedule_, trainer.internals_->sharded.get()},
      position_(restored_position()),
      planned_steps_(plan_steps(train, options_, layout_, position_)),
      schedule_(options_.schedule(), options_.optimizer().lr(), planned_steps_),
      report_(options_, trainer.rank(), /*append=*/!options_.resume().empty(), layout_.global_batch(), planned_steps_,
              tokens_per_sample, layout_.world),
      losses_(trainer.world_, options_.device()),
      stop_requests_(trainer.world_),
      early_stopping_(options_.early_stopping_patience(), options_.early_stopping_metric()) {
  if (!options_.keep_best().empty()) {
    DPT_CHECK(test_ && (options_.eval_each_epoch() || options_.eval_every_steps() > 0), InvalidArgumentError,
              "--keep-best ", options_.keep_best(),
              " needs evaluations: this run has none (no test split, or --no-eval without --eval-every N)");
    keep_best_.emplace(options_.keep_best(), "--keep-best");
  }
  restore_monitors();
  if (layout_.world > 1) {
    stragglers_ = std::make_unique<StragglerMonitor>(trainer.world_, options_.straggler_threshold());
  }
}

std::unique_ptr<CheckpointDirectory> FitLoop::open_checkpoints() {
  if (options_.checkpoint_dir().empty()) return nullptr;
  auto directory = std::make_unique<CheckpointDirectory>(options_.checkpoint_dir(), options_.keep_checkpoints());
  // Before anything is resumed from it: another job writing there would be a race.
  bytes_from_rank0(trainer_.world_, [&] {
    directory->prepare();
    checkpoint_lock_ = std::make_unique<DirectoryLock>(options_.checkpoint_dir(), "--checkpoint-dir");
    return Bytes();
  });
  return directory;
}

Position FitLoop::restored_position() {
  if (options_.resume().empty()) return Position();
  if (options_.resume() == "latest") {
    // A job script passes --resume on every launch, the first included: with nothing to resume
    // from, the run starts from the beginning (rank 0 looks; every rank gets its answer).
    const Bytes none = bytes_from_rank0(trainer_.world_, [&] {
      return Bytes(1, checkpoints_ && checkpoints_->list().empty() ? 1 : 0);
    });
    if (none.at(0) != 0) {
      if (trainer_.rank() == 0) {
        DPT_LOG_INFO("--resume latest: no checkpoint in {} yet: starting from the beginning", options_.checkpoint_dir());
      }
      return Position();
    }
  }
  std::string origin;
  Position position = restore_run(run_, origin, &restored_monitors_);
  check_position(position, train_, options_, layout_, origin);
  return position;
}

void FitLoop::check_finite() {
  // The model is never checkpointed (or reported) after a step whose loss was NaN or Inf.
  if (!options_.skip_nonfinite_loss()) losses_.check_finite(kNonFiniteAdvice);
}

void FitLoop::restore_monitors() {
  // The counts continue where the checkpoint left them: a resumed run stops, and keeps its best,
  // as the uninterrupted run would have.
  if (auto it = restored_monitors_.find("early_stopping"); it != restored_monitors_.end()) {
    early_stopping_.monitor().restore(it->second);
  }
  if (auto it = restored_monitors_.find("keep_best"); keep_best_ && it != restored_monitors_.end()) {
    keep_best_->restore(it->second);
  }
}

std::map<std::string, MonitorState> FitLoop::monitor_states() const {
  std::map<std::string, MonitorState> states;
  if (early_stopping_.enabled()) states.emplace("early_stopping", early_stopping_.monitor().state());
  if (keep_best_) states.emplace("keep_best", keep_best_->state());
  return states;
}

void FitLoop::save_checkpoint(bool numbered) {
  if (!checkpoints_) return;
  check_finite();
  trainer_.internals_->sync->sync_buffers();
  const CheckpointTarget target = !numbered       ? CheckpointTarget::BestOnly
                                  : best_pending_ ? CheckpointTarget::NumberedAndBest
                                                  : CheckpointTarget::Numbered;
  save_run(run_, position_, *checkpoints_, monitor_states(), target);
  best_pending_ = false;
}

TrainResult FitLoop::run() {
  StopRequest::defer(true);  // from here a stop request becomes a checkpoint at the next step
  for (auto& callback : trainer_.callbacks_) callback->on_train_begin(position_.step);
  DPT_LOG_INFO("training: {}, {} rank(s) x batch {} x accumulation {} = global batch {}, {} steps in epoch 1, "
               "{} epochs, {} planned steps",
               train_.describe(), layout_.world, layout_.batch, layout_.accumulation, layout_.global_batch(),
               train_.steps_in_epoch(0, 0, layout_), options_.epochs(), planned_steps_);
  trainer_.model_.train();
  bool finished = position_.step >= planned_steps_;
  while (!finished && position_.epoch < options_.epochs()) {
    const EpochEnd end = run_epoch();
    if (end == EpochEnd::StoppedInside) break;  // the position stays in this epoch
    ++position_.epoch;
    finished = end == EpochEnd::CompletedAndStop;
  }
  check_finite();
  report_.step_losses(losses_.take_step_losses(), position_.epoch);  // a run stopped inside an epoch
  report_rank_spread(/*last=*/true);
  trainer_.internals_->sync->sync_buffers();
  if (test_ && !result_.stopped_early && last_evaluated_step_ != position_.step &&
      (!result_.final_eval || !options_.eval_each_epoch() || position_.batch_in_epoch != 0)) {
    // Stopped mid-epoch by --max-steps (or no per-epoch evaluation): evaluate the final model.
    result_.final_eval = trainer_.evaluate(*test_);
    report_.final_evaluation(position_, *result_.final_eval);
  }
  result_.steps = position_.step;
  result_.elapsed_seconds = report_.elapsed_s();
  report_.finish();
  for (auto& callback : trainer_.callbacks_) callback->on_train_end(result_);
  return result_;
}

FitLoop::EpochEnd FitLoop::run_epoch() {
  const double epoch_start = report_.elapsed_s();
  const int64_t epoch_steps = train_.steps_in_epoch(position_.epoch, position_.epoch_offset, layout_);
  losses_.start_epoch();
  // The rest of this epoch's micro-batches, in the order the loop below takes them, prepared
  // ahead on the pool; leaving the epoch early (stop, error) cancels the stream.
  PreprocessPool pool(options_.workers(), options_.prefetch_batches());
  const int64_t first_micro = position_.batch_in_epoch * layout_.accumulation;
  auto micro_batches = pool.map<TrainBatch>(
      std::max<int64_t>(0, epoch_steps * layout_.accumulation - first_micro),
      [this, first_micro, epoch = position_.epoch, offset = position_.epoch_offset](int64_t k) {
        return train_.micro_batch(epoch, offset, first_micro + k, layout_);
      });
  auto next_micro_batch = [&] {
    auto prepared = micro_batches.next();
    DPT_ASSERT(prepared.has_value(), "the preprocessing stream ended before epoch ", position_.epoch + 1);
    return std::move(*prepared);
  };
  for (; position_.batch_in_epoch < epoch_steps; ++position_.batch_in_epoch) {
    const double lr = schedule_.lr_at(position_.step);
    set_learning_rate(trainer_.internals_->active_optimizer(), lr);
    trainer_.position_step_ = position_.step;
    const double step_start = report_.elapsed_s();
    StepInfo info = trainer_.train_step(next_micro_batch, losses_);
    ++position_.step;
    if (stragglers_) stragglers_->add_step(position_.step, report_.elapsed_s() - step_start, info.exposed_comm_s);
    ++steps_this_run_;
    info.epoch = position_.epoch;
    info.step = position_.step;
    info.lr = lr;
    if (after_step(info, epoch_steps)) {
      ++position_.batch_in_epoch;
      if (position_.batch_in_epoch < epoch_steps) return EpochEnd::StoppedInside;
      end_epoch(epoch_start);
      return EpochEnd::CompletedAndStop;
    }
  }
  end_epoch(epoch_start);
  return stop_early_ ? EpochEnd::CompletedAndStop : EpochEnd::Completed;
}

EvalResult FitLoop::evaluate(const std::string& what) {
  EvalResult eval = trainer_.evaluate(*test_);
  result_.final_eval = eval;
  last_evaluated_step_ = position_.step;
  if (early_stopping_.observe(eval, position_.step) && !stop_early_) {
    stop_early_ = true;
    result_.stopped_by_early_stopping = true;
    DPT_LOG_INFO("early stopping after {} at step {}: {}", what, position_.step, early_stopping_.reason());
  }
  if (keep_best_ && keep_best_->observe(eval, position_.step)) {
    best_pending_ = true;
    DPT_LOG_INFO("{} {:.6g} at step {}: the best so far, kept as {}", keep_best_->metric(), *keep_best_->best(),
                 position_.step, checkpoints_->best_path());
  }
  return eval;
}

bool FitLoop::after_step(StepInfo& info, int64_t epoch_steps) {
  const auto& o = options_;
  const bool log_now = o.log_every_steps() > 0 && (position_.step % o.log_every_steps() == 0 || position_.step == 1);
  report_.after_step(info, position_, epoch_steps);
  if (log_now) {
    check_finite();
    auto losses = losses_.take_step_losses();  // this step's is the last
    info.loss = std::isnan(info.loss) || losses.empty() ? NAN : losses.back().second;
    if (!losses.empty()) losses.pop_back();
    report_.step_losses(losses, position_.epoch);
    report_.step(info, position_, epoch_steps);
    report_rank_spread(/*last=*/false);
  } else {
    info.loss = NAN;  // reported only at log steps (see StepInfo)
  }
  for (auto& callback : trainer_.callbacks_) callback->on_step_end(info);
  // The epoch's end evaluates and checkpoints this step itself (end_epoch): never twice.
  const bool ends_epoch = position_.batch_in_epoch + 1 == epoch_steps;
  if (test_ && o.eval_every_steps() > 0 && position_.step % o.eval_every_steps() == 0 &&
      !(ends_epoch && o.eval_each_epoch())) {
    const EvalResult eval = evaluate("the evaluation of step " + std::to_string(position_.step));
    report_.evaluation(position_, eval, "evaluation at step " + std::to_string(position_.step));
  }
  const bool reached_max = position_.step >= planned_steps_;
  const bool asked_to_stop = stop_requests_.stop_now() && !reached_max;  // every rank the same answer
  const bool stop_now =
      (o.stop_after_steps() > 0 && steps_this_run_ >= o.stop_after_steps() && !reached_max) || asked_to_stop;
  const bool periodic = o.checkpoint_every_steps() > 0 && position_.step % o.checkpoint_every_steps() == 0;
  const bool numbered = (reached_max || stop_now || periodic || stop_early_) && !ends_epoch;
  if (numbered || (best_pending_ && !ends_epoch)) {
    ++position_.batch_in_epoch;  // the checkpoint points after this step
    save_checkpoint(numbered);
    --position_.batch_in_epoch;
  }
  if (asked_to_stop) {
    result_.stopped_early = true;
    result_.stopped_on_request = true;
    const int signal = StopRequest::signal_number();
    const std::string why = signal != 0 ? "asked to stop (signal " + std::to_string(signal) + ")"
                                        : std::string("asked to stop (another rank got the signal)");
    if (checkpoints_) {
      DPT_LOG_WARN("stopping at step {}: {}; checkpoint of step {} in {}, continue with --resume", position_.step, why,
                   position_.step, options_.checkpoint_dir());
    } else {
      DPT_LOG_WARN("stopping at step {}: {}; no --checkpoint-dir, so this run's progress is not saved",
                   position_.step, why);
    }
  } else if (stop_now) {
    result_.stopped_early = true;
    DPT_LOG_INFO("stopping after {} step(s) of this run (--stop-after-steps); continue with --resume",
                 steps_this_run_);
  }
  return reached_max || stop_now || stop_early_;
}

void FitLoop::report_rank_spread(bool last) {
  if (!stragglers_) return;
  if (last) {
    for (const auto& spread : stragglers_->finish(position_.step)) report_.rank_spread(spread);
  } else if (auto spread = stragglers_->at_log_step(position_.step)) {
    report_.rank_spread(*spread);
  }
}

void FitLoop::end_epoch(double epoch_start) {
  check_finite();
  EpochInfo info;
  info.epoch = position_.epoch;
  info.step = position_.step;
  info.train_loss = losses_.epoch_mean();
  report_.step_losses(losses_.take_step_losses(), position_.epoch);  // those after the last log line
  if (test_ && options_.eval_each_epoch()) info.eval = evaluate("epoch " + std::to_string(position_.epoch + 1));
  info.elapsed_seconds = report_.elapsed_s() - epoch_start;
  report_.epoch(info);
  for (auto& callback : trainer_.callbacks_) callback->on_epoch_end(info);
  ++result_.epochs_completed;
  // The checkpoint of a finished epoch points at the start of the next one.
  position_.batch_in_epoch = 0;
  position_.epoch_offset = 0;
  ++position_.epoch;
  save_checkpoint();
  --position_.epoch;
}

}  // namespace dpt
