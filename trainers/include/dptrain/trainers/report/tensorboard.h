// TensorBoard event files from C++, so `tensorboard --logdir DIR` shows a run's curves while it
// trains, as it does for PyTorch's torch.utils.tensorboard.SummaryWriter:
//
//   dpt::TensorBoardWriter writer("runs/resnet");
//   writer.add_scalars(step, {{"train/loss", 0.41}, {"train/lr", 0.1}});
//
// One file per writer, "events.out.tfevents.<unix time>.<host>.<pid>.<n>" (SummaryWriter's naming),
// a sequence of records: uint64 length, uint32 masked CRC-32C of the length, the serialized
// tensorboard.Event (protobuf, trainers/proto/tensorboard_event.proto), uint32 masked CRC-32C of
// the data - TFRecord framing. The CRC-32C comes from Intel's ISA-L. Records are flushed by flush()
// (the Trainer flushes at each log line and epoch), so a killed run loses at most the last ones.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace dpt {

class TensorBoardWriter {
 public:
  // Creates `directory` if needed; IoError naming it when it cannot be written.
  explicit TensorBoardWriter(const std::string& directory);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One event holding every (tag, value) pair at `step`; non-finite values are skipped.
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  void add_scalar(const std::string& tag, double value, int64_t step) { add_scalars(step, {{tag, value}}); }
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);

  std::string path_;
  std::ofstream out_;
};

// CRC-32C (Castagnoli) of `size` bytes, and TFRecord's mask of it.
uint32_t crc32c(const void* data, size_t size);
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace dpt
