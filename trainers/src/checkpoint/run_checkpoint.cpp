#include "checkpoint/run_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

#include "dptrain/core/checked_math.h"
#include "dptrain/core/config.h"
#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"
#include "dptrain/core/serialize.h"
#include "dptrain/trainers/optim/optimizer_state_dict.h"
#include "checkpoint/zero_optimizer_checkpoint.h"

#if DPTRAIN_HAVE_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace dpt {
namespace {

int rank_of(const CommunicatorPtr& world) { return world ? world->rank() : 0; }
int size_of(const CommunicatorPtr& world) { return world ? world->size() : 1; }

// This rank's generators: the CPU one always, the CUDA one of the training device when there is.
NamedTensors my_generator_states(const torch::Device& device) {
  NamedTensors states;
  states.emplace("cpu", at::detail::getDefaultCPUGenerator().get_state());
#if DPTRAIN_HAVE_CUDA
  if (device.is_cuda()) states.emplace("cuda", at::cuda::detail::getDefaultCUDAGenerator(device.index()).get_state());
#else
  (void)device;
#endif
  return states;
}

void set_generator_state(at::Generator generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// Rank r resumes with rank r's saved generators (rank r % saved ranks after a world size change;
// the trajectory then differs anyway).
void restore_generators(const Checkpoint& checkpoint, int rank, const torch::Device& device) {
  int64_t saved_ranks = 0;
  while (checkpoint.generator_states.count("cpu/" + std::to_string(saved_ranks))) ++saved_ranks;
  if (saved_ranks == 0) return;
  const std::string me = std::to_string(rank % saved_ranks);
  set_generator_state(at::detail::getDefaultCPUGenerator(), checkpoint.generator_states.at("cpu/" + me));
#if DPTRAIN_HAVE_CUDA
  auto cuda = checkpoint.generator_states.find("cuda/" + me);
  if (device.is_cuda() && cuda != checkpoint.generator_states.end()) {
    set_generator_state(at::cuda::detail::getDefaultCUDAGenerator(device.index()), cuda->second);
  }
#else
  (void)device;
#endif
}

// Counters a checkpoint cannot hold: negative positions, a step count below the steps of the
// epoch it points into, a world size or global batch of none. (Whether the position fits this
// run's schedule and data is the FitLoop's check.)
void check_fields(const Checkpoint& c, const std::string& origin) {
  auto field = [&](const char* name, int64_t value, int64_t least) {
    DPT_CHECK(value >= least, DataError, "checkpoint ", origin, ": field '", name, "' is ", value, ", expected >= ",
              least);
  };
  field("epoch", c.epoch, 0);
  field("step", c.step, 0);
  field("batch_in_epoch", c.batch_in_epoch, 0);
  field("epoch_offset", c.epoch_offset, 0);
  field("global_batch", c.global_batch, 0);
  field("world_size", c.world_size, 0);
  DPT_CHECK(c.batch_in_epoch <= c.step, DataError, "checkpoint ", origin, ": it is at step ", c.batch_in_epoch,
            " of its epoch but at step ", c.step, " of the run");
}

}  // namespace

std::string describe(const Position& position) {
  if (position.batch_in_epoch == 0 && position.epoch > 0) {
    return detail::concat("end of epoch ", position.epoch, ", step ", position.step);
  }
  return detail::concat("epoch ", position.epoch + 1, ", step ", position.step);
}

Position restore_run(const RunParts& run, std::string& origin, std::map<std::string, MonitorState>* callbacks) {
  const auto& o = run.options;
  std::string chosen;
  Bytes bytes = bytes_from_rank0(run.world, [&] { return read_checkpoint_file(o.resume(), o.checkpoint_dir(), chosen); });
  // Every rank names the file rank 0 chose: each rank decodes and checks the checkpoint, and the
  // first rank to find it wrong takes the job down, so its message must name the file too.
  if (size_of(run.world) > 1) {
    const Bytes name = run.world->broadcast_bytes(Bytes(chosen.begin(), chosen.end()), 0);
    chosen.assign(name.begin(), name.end());
  }
  origin = chosen;
  Checkpoint checkpoint = decode_checkpoint(bytes, origin);
  check_fields(checkpoint, origin);
  if (callbacks) *callbacks = checkpoint.callbacks;
  if (checkpoint.seed) {
    DPT_CHECK(*checkpoint.seed == o.seed(), InvalidArgumentError, "--seed ", o.seed(), " differs from the seed ",
              *checkpoint.seed, " of checkpoint ", origin, ": the data order would change; pass --seed ",
              *checkpoint.seed);
  } else if (rank_of(run.world) == 0) {
    DPT_LOG_WARN("checkpoint {} has no 'sampler' (seed, position in the epoch): continuing with epoch {} from its "
                 "first batch, with --seed {}", origin, checkpoint.epoch + 1, o.seed());
  }
  if (checkpoint.generator_states.empty() && rank_of(run.world) == 0) {
    DPT_LOG_WARN("checkpoint {} has no generator states ('rng'): random draws (dropout, augmentation) continue "
                 "from this run's seed", origin);
  }
  run.model.load_state_dict(checkpoint.model);
  if (run.sharded) {
    load_zero_optimizer_state(*run.sharded, run.model.parameters(), o.optimizer(), checkpoint, origin);
  } else {
    load_optimizer_state(run.optimizer, checkpoint, origin);
  }
  restore_generators(checkpoint, rank_of(run.world), o.device());
  if (checkpoint.loss_scale > 0) {
    run.scaler.scale = checkpoint.loss_scale;
    run.scaler.clean_steps = checkpoint.loss_scale_growth_tracker;
  }
  const int64_t old_offset = checkpoint.epoch_offset;
  const int64_t old_global_batch = checkpoint.global_batch > 0 ? checkpoint.global_batch : run.global_batch;

  Position position;
  position.epoch = checkpoint.epoch;
  position.step = checkpoint.step;
  const std::string what = "checkpoint " + origin + "'s sampler position";
  const int64_t consumed = checked_add(old_offset, checked_mul(checkpoint.batch_in_epoch, old_global_batch, what), what);
  if (old_global_batch != run.global_batch && !run.reshardable) {
    DPT_LOG_WARN("checkpoint {} was written with a global batch of {}, this run's is {}: a sharded source deals its "
                 "shards differently now, so epoch {} restarts from its first sample",
                 origin, old_global_batch, run.global_batch, position.epoch + 1);
  } else if (old_global_batch != run.global_batch) {
    position.epoch_offset = consumed;
    DPT_LOG_WARN(
        "checkpoint {} was written by {} rank(s) with a global batch of {}; resuming on {} rank(s) with a global "
        "batch of {}: the data is re-sharded, continuing epoch {} from sample {} of its order",
        origin, checkpoint.world_size, old_global_batch, size_of(run.world), run.global_batch, position.epoch + 1,
        consumed);
  } else {
    position.epoch_offset = old_offset;
    position.batch_in_epoch = checkpoint.batch_in_epoch;
  }
  DPT_LOG_INFO("resumed from {}: {}", origin, describe(position));
  return position;
}

void save_run(const RunParts& run, const Position& position, const CheckpointDirectory& directory,
              const std::map<std::string, MonitorState>& callbacks, CheckpointTarget target) {
  // Every rank's generators travel to rank 0 (one small allgather).
  NamedTensors generators;
  const auto mine = my_generator_states(run.options.device());
  if (size_of(run.world) > 1) {
    auto all = run.world->allgather_bytes(serialize_named_tensors(mine));
    for (size_t r = 0; r < all.size(); ++r) {
      for (auto& [name, state] : deserialize_named_tensors(all[r], "generator states of rank " + std::to_string(r))) {
        generators.emplace(name + "/" + std::to_string(r), state);
      }
    }
  } else {
    for (const auto& [name, state] : mine) generators.emplace(name + "/0", state);
  }
  // A sharded optimizer's state is gathered by every rank (a collective), converted by rank 0.
  const ShardedOptimizer::State gathered = run.sharded ? run.sharded->full_state() : ShardedOptimizer::State();
  if (rank_of(run.world) != 0) return;
  Checkpoint checkpoint;
  checkpoint.epoch = position.epoch;
  checkpoint.batch_in_epoch = position.batch_in_epoch;
  checkpoint.step = position.step;
  checkpoint.world_size = size_of(run.world);
  checkpoint.seed = run.options.seed();
  checkpoint.global_batch = run.global_batch;
  checkpoint.epoch_offset = position.epoch_offset;
  checkpoint.model = run.model.state_dict();
  // run.optimizer is the shard's optimizer under ZeRO-1: the schedule's learning rate is on it.
  checkpoint.optimizer = run.sharded ? zero_optimizer_state_dict(gathered, run.optimizer.param_groups().front()
                                                                                  .options().get_lr(),
                                                                    run.model.parameters(), run.options.optimizer())
                                     : optimizer_state_dict(run.optimizer);
  checkpoint.generator_states = std::move(generators);
  if (run.schedule) checkpoint.scheduler = run.schedule->state_dict();
  if (run.scaler.enabled) {
    checkpoint.loss_scale = run.scaler.scale;
    checkpoint.loss_scale_growth_tracker = run.scaler.clean_steps;
    checkpoint.loss_scale_growth_interval = run.scaler.growth_interval;
  }
  checkpoint.callbacks = callbacks;
  if (target == CheckpointTarget::BestOnly) {
    DPT_LOG_INFO("checkpoint {} written ({})", directory.write_best(checkpoint), describe(position));
    return;
  }
  std::string path = directory.write(checkpoint, target == CheckpointTarget::NumberedAndBest);
  DPT_LOG_INFO("checkpoint {} written ({}{})", path, describe(position),
               target == CheckpointTarget::NumberedAndBest ? "; also best.pt" : "");
}

}  // namespace dpt
