// Where a training run is, and how it is saved to and restored from a checkpoint (private to the
// Trainer). Every function here is collective: all ranks call it at the same point.
#pragma once

#include "dptrain/parallel/zero/sharded_optimizer.h"

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "dptrain/core/model.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/trainers/checkpoint/checkpoint.h"
#include "dptrain/trainers/loop/trainer.h"
#include "loop/loss_scaler.h"

namespace dpt {

// The checkpointed position of a run.
struct Position {
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;  // optimizer steps taken in `epoch`
  int64_t step = 0;            // optimizer steps in total
  // Samples of epoch `epoch`'s permutation consumed before this run's world size took over (set
  // on a resume at a different world size; 0 otherwise).
  int64_t epoch_offset = 0;
};

// As users count, epochs from 1: "epoch 2, step 700" inside an epoch, "end of epoch 3, step 1404"
// at a boundary (where `epoch` already names the next, 0-based).
std::string describe(const Position& position);

// What a run needs to checkpoint and resume: the pieces the Trainer owns.
struct RunParts {
  Model& model;
  torch::optim::Optimizer& optimizer;
  LossScaler& scaler;
  const CommunicatorPtr& world;  // may be null (one process)
  const TrainerOptions& options;
  int64_t global_batch;          // ranks x batch x accumulation of this run
  // The source continues an epoch exactly at another world size (else such a resume restarts it).
  bool reshardable = true;
  const LrSchedule* schedule = nullptr;  // described in the checkpoint for its readers
  // ZeRO-1: the optimizer state is sharded; checkpoints gather it into the unsharded layout.
  ShardedOptimizer* sharded = nullptr;
};

// Reads options.resume() on rank 0 (its bytes reach every rank), loads the model, the optimizer
// state (onto options.device()), each rank's CPU and CUDA generator states and the loss scale, and
// returns where to continue; re-shards the epoch when the global batch changed. A checkpoint
// written by a PyTorch script needs only "model", "optimizer", "epoch" and "step"; what else it
// lacks (sampler position, generators) is said in a warning.
// `origin` is set to the checkpoint read (its path on rank 0) for later messages; `callbacks`, when
// given, to the watched metrics' states it holds (none for a file without them).
Position restore_run(const RunParts& run, std::string& origin,
                     std::map<std::string, MonitorState>* callbacks = nullptr);

// The files a checkpoint goes to (checkpoint.h): the numbered one (and last.pt), that one and
// best.pt, or best.pt alone (an improving evaluation between numbered checkpoints).
enum class CheckpointTarget { Numbered, NumberedAndBest, BestOnly };

// Writes a checkpoint of `position` into `directory` (rank 0 writes; every rank contributes its
// generator states), with the watched metrics' `callbacks`.
void save_run(const RunParts& run, const Position& position, const CheckpointDirectory& directory,
              const std::map<std::string, MonitorState>& callbacks = {},
              CheckpointTarget target = CheckpointTarget::Numbered);

}  // namespace dpt
