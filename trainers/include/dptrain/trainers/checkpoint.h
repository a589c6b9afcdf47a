// Training checkpoints: everything needed to continue a run exactly where it stopped.
//
// File layout (one file per checkpoint, "<dir>/checkpoint-<step>.dpt"):
//   8 bytes  magic "DPTCKPT1"
//   8 bytes  payload size (little-endian uint64)
//   8 bytes  FNV-1a checksum64 of the payload
//   payload  libtorch pickle of a name -> tensor map: "model.<name>" for each parameter/buffer,
//            "optimizer" (the optimizer's torch::serialize archive as uint8), "rng" (rank 0's CPU
//            generator state), "rng.<device>/<rank>" (every rank's CPU and CUDA generator
//            states), "meta" (JSON as uint8: epoch, step, world size, options, ...).
// A truncated file fails the size check, a flipped byte the checksum; both errors name the file.
//
// Only rank 0 writes (dpt::write_file_atomic: temporary file, fsync, rename), and only rank 0
// reads; the Trainer broadcasts the bytes to the other ranks, so no shared file system is needed.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dptrain/core/serialize.h"

namespace dpt {

struct Checkpoint {
  int64_t epoch = 0;           // the epoch in progress (0-based)
  int64_t batch_in_epoch = 0;  // optimizer steps already taken in that epoch
  int64_t step = 0;            // optimizer steps taken since the start of training
  int64_t world_size = 1;      // world size that wrote it (a different one on resume re-shards)
  int64_t seed = 0;
  NamedTensors model;          // parameters and buffers by name
  Bytes optimizer;             // torch::optim::Optimizer::save archive
  torch::Tensor rng_state;     // rank 0's CPU generator state (dropout masks, ...)
  NamedTensors generator_states;  // "cpu/<rank>", "cuda/<rank>": each rank's generators
  std::string extra_json = "{}";  // free-form JSON for callers (loss scaler state, options)
};

Bytes encode_checkpoint(const Checkpoint& checkpoint);
// `origin` (a path, "rank 0") names the source in errors: DataError for a truncated or corrupt
// file, with the reason (short file, bad magic, checksum mismatch).
Checkpoint decode_checkpoint(const Bytes& bytes, const std::string& origin);

// Optimizer state <-> bytes through torch::serialize archives.
Bytes save_optimizer_state(torch::optim::Optimizer& optimizer);
// The state tensors land on the device of the parameter they belong to (map_location): each
// rank's own GPU, whatever device the rank that saved them used.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const Bytes& bytes, const std::string& origin);

// The checkpoint files of one directory: writing (atomic, keeps the newest `keep_last`) and
// finding the newest.
class CheckpointDirectory {
 public:
  CheckpointDirectory(std::string directory, int keep_last = 3);

  const std::string& directory() const { return directory_; }
  // Creates the directory if needed; InvalidArgumentError when it cannot be written.
  void prepare() const;
  // Writes checkpoint-<step>.dpt atomically and removes the oldest beyond keep_last.
  // Returns the path written.
  std::string write(const Checkpoint& checkpoint) const;
  // Checkpoint files, oldest first (by step).
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
