#include "dptrain/trainers/report/tensorboard.h"

#include <isa-l/crc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>

#include "dptrain/core/env.h"
#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "tensorboard_events.h"

namespace dpt {
namespace {

double unix_time_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string event_file_name() {
  static std::atomic<int> counter{0};
  return "events.out.tfevents." + std::to_string(static_cast<int64_t>(unix_time_s())) + "." + env::host_name() + "." +
         std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  // ISA-L's crc32_iscsi neither inverts the initial value nor the result: CRC-32C is the
  // inverted result starting from all ones. Chunks keep the length within its `int`.
  uint32_t state = 0xFFFFFFFFu;
  auto* bytes = static_cast<unsigned char*>(const_cast<void*>(data));
  while (size > 0) {
    const int chunk = static_cast<int>(std::min<size_t>(size, INT_MAX));
    state = crc32_iscsi(bytes, chunk, state);
    bytes += chunk;
    size -= static_cast<size_t>(chunk);
  }
  return ~state;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& directory) {
  try {
    fs::create_directories(directory);
  } catch (const Error& e) {
    DPT_THROW(IoError, "--tensorboard ", directory, " cannot be created: ", e.what());
  }
  path_ = fs::join(directory, event_file_name());
  out_.open(path_, std::ios::binary | std::ios::trunc);
  DPT_CHECK(out_.good(), IoError, "--tensorboard ", directory, " is not writable (", path_, ")");
  write_record(tensorboard_events::file_version_event(unix_time_s()));
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  if (out_.is_open()) out_.flush();
}

void TensorBoardWriter::add_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  std::vector<std::pair<std::string, double>> finite;
  for (const auto& scalar : scalars) {
    if (std::isfinite(scalar.second)) finite.push_back(scalar);
  }
  if (!finite.empty()) write_record(tensorboard_events::scalars_event(unix_time_s(), step, finite));
}

void TensorBoardWriter::write_record(const std::string& data) {
  std::string header;
  put_le(header, data.size(), 8);
  put_le(header, masked_crc32c(header.data(), 8), 4);
  std::string footer;
  put_le(footer, masked_crc32c(data.data(), data.size()), 4);
  out_ << header << data << footer;
  DPT_CHECK(out_.good(), IoError, path_, ": write failed");
}

void TensorBoardWriter::flush() {
  out_.flush();
  DPT_CHECK(out_.good(), IoError, path_, ": write failed");
}

}  // namespace dpt
