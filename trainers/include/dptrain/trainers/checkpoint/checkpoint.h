// Training checkpoints: everything needed to continue a run exactly where it stopped, in a file
// PyTorch opens.
//
// One file per checkpoint, "<dir>/checkpoint-<step>.pt", written with libtorch's torch.save format
// (a zip archive holding a pickle), so that
//
//   ckpt = torch.load("ckpt/checkpoint-0000000120.pt")          # weights_only=True works
//   model.load_state_dict(ckpt["model"])
//   optimizer.load_state_dict(ckpt["optimizer"])                 # torch.optim.SGD / Adam / AdamW
//
// Keys (docs/trainer.md shows a PyTorch script that continues a dptrain run, and the reverse):
//   "model"       the state_dict: parameter and buffer name -> tensor (CPU)
//   "optimizer"   the optimizer's state_dict in PyTorch's layout (optim/optimizer_state_dict.h)
//   "epoch"       the epoch to continue (0-based; after a finished epoch, the number finished)
//   "step"        optimizer steps taken since the start of training
//   "sampler"     {"batch_in_epoch", "seed", "world_size", "global_batch", "epoch_offset"}: the
//                 position inside the epoch and what the data order depends on
//   "scheduler"   the learning-rate schedule (optim.h; a function of "step")
//   "scaler"      AMP loss scaling, torch.amp.GradScaler's state_dict keys (only with --amp)
//   "rng"         {"cpu": [one generator state per rank], "cuda": [...]}
//   "callbacks"   {"early_stopping": {...}, "keep_best": {...}}: each watched validation metric's
//                 "monitor", "best_score", "best_step" and "wait_count" (evaluations since it
//                 improved), as Lightning keeps its callbacks' state; absent when none is watched
//   "dptrain"     {"format": 2, "version": "..."}
// Integrity: the zip format stores a CRC-32 per record; every read checks them all (libtorch's
// reader does not), so a flipped byte or a truncated file is an error naming the file. Files of
// dptrain's first format (checkpoint-<step>.dpt, a checksummed container) are still read.
//
// Beside the numbered files: "last.pt", the newest checkpoint (a hard link to it, or a copy where
// the file system has no links), and with --keep-best "best.pt", the checkpoint of the best
// evaluation so far. Both are replaced atomically and are never pruned.
//
// Only rank 0 writes (dpt::write_file_atomic: temporary file, fsync, rename), and only rank 0
// reads; the Trainer broadcasts the bytes to the other ranks, so no shared file system is needed.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/core/serialize.h"

namespace dpt {

// A validation metric watched across evaluations (early stopping, --keep-best).
struct MonitorState {
  std::string metric;           // test_loss, test_accuracy, val_<name>
  std::optional<double> best;   // absent before the first evaluation
  int64_t best_step = 0;        // the optimizer step evaluated when `best` was seen
  int64_t evaluations_without_improvement = 0;
};

struct Checkpoint {
  int64_t epoch = 0;           // the epoch in progress (0-based)
  int64_t batch_in_epoch = 0;  // optimizer steps already taken in that epoch
  int64_t step = 0;            // optimizer steps taken since the start of training
  int64_t world_size = 1;      // world size that wrote it (a different one on resume re-shards)
  std::optional<int64_t> seed;  // the data order's seed (absent from a file without "sampler")
  int64_t global_batch = 0;    // ranks x batch x accumulation that wrote it (0: not recorded)
  int64_t epoch_offset = 0;    // samples of `epoch` consumed before `world_size` took over
  NamedTensors model;          // parameters and buffers by name
  c10::IValue optimizer;       // PyTorch's optimizer state_dict layout; None when absent
  Bytes legacy_optimizer;      // format 1 (.dpt) only: a torch::optim::Optimizer::save archive
  NamedTensors generator_states;  // "cpu/<rank>", "cuda/<rank>": each rank's generators
  c10::IValue scheduler;       // a dict describing the schedule (written for readers; None: absent)
  // AMP loss scaling; loss_scale 0 when the run had none.
  double loss_scale = 0.0;
  int64_t loss_scale_growth_tracker = 0;
  int64_t loss_scale_growth_interval = 2000;
  std::map<std::string, MonitorState> callbacks;  // "early_stopping", "keep_best"
};

// The torch.save bytes of a checkpoint.
Bytes encode_checkpoint(const Checkpoint& checkpoint);
// Checks the bytes (CRC of every record) and decodes either format. `origin` (a path, "rank 0")
// names the source in errors: DataError for a truncated or corrupt file or a missing key.
Checkpoint decode_checkpoint(const Bytes& bytes, const std::string& origin);
// The integrity check alone (DataError as above).
void verify_checkpoint(const Bytes& bytes, const std::string& origin);

// Loads a checkpoint's optimizer state (either format) into `optimizer`. The state tensors land
// on the device of the parameter they belong to (map_location): each rank's own GPU, whatever
// device the rank that saved them used. DataError naming `origin` when it does not fit.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const Checkpoint& checkpoint, const std::string& origin);

// The checkpoint files of one directory: writing (atomic, keeps the newest `keep_last`) and
// finding the newest.
class CheckpointDirectory {
 public:
  CheckpointDirectory(std::string directory, int keep_last = 3);

  const std::string& directory() const { return directory_; }
  // Creates the directory if needed; InvalidArgumentError when it cannot be written.
  void prepare() const;
  // Writes checkpoint-<step>.pt atomically, points last.pt at it (and best.pt when `best`), and
  // removes the oldest numbered files beyond keep_last. Returns the path written.
  std::string write(const Checkpoint& checkpoint, bool best = false) const;
  // Writes best.pt alone (an evaluation between numbered checkpoints improved the metric).
  std::string write_best(const Checkpoint& checkpoint) const;
  std::string last_path() const;
  std::string best_path() const;
  // Checkpoint files (.pt, and .dpt of the first format), oldest first (by step).
  std::vector<std::string> list() const;
  std::optional<std::string> latest() const;
  std::string path_for_step(int64_t step) const;

 private:
  std::string directory_;
  int keep_last_;
};

// Reads and verifies a checkpoint file. For `path` empty or "latest", takes the newest file of
// `directory`; when that one is corrupt it says so (warning naming the file) and falls back to the
// previous intact one. An explicitly named corrupt file is an error naming it.
// Returns the verified bytes and sets `chosen` to the file used.
Bytes read_checkpoint_file(const std::string& path, const std::string& directory, std::string& chosen);

}  // namespace dpt
