#include "checkpoint/checkpoint_v1.h"

#include <nlohmann/json.hpp>

#include <cstring>

#include "dptrain/core/error.h"

namespace dpt::checkpoint_v1 {
namespace {

constexpr char kMagic[8] = {'D', 'P', 'T', 'C', 'K', 'P', 'T', '1'};
constexpr size_t kHeaderSize = 24;

uint64_t get_u64(const char* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return value;
}

void put_u64(Bytes& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::string tensor_string(const torch::Tensor& tensor) {
  auto contiguous = tensor.contiguous();
  return std::string(static_cast<const char*>(contiguous.data_ptr()), static_cast<size_t>(contiguous.numel()));
}

torch::Tensor bytes_tensor(const std::string& text) {
  auto tensor = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(tensor.data_ptr(), text.data(), text.size());
  return tensor;
}

Bytes payload_of(const Bytes& bytes, const std::string& origin) {
  verify(bytes, origin);
  return Bytes(bytes.begin() + kHeaderSize, bytes.end());
}

}  // namespace

bool is_v1(const Bytes& bytes) {
  return bytes.size() >= sizeof(kMagic) && std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0;
}

void verify(const Bytes& bytes, const std::string& origin) {
  DPT_CHECK(bytes.size() >= kHeaderSize, DataError, "checkpoint ", origin, " is truncated: ", bytes.size(),
            " bytes, shorter than its ", kHeaderSize, "-byte header");
  DPT_CHECK(is_v1(bytes), DataError, "checkpoint ", origin, " is not a dptrain checkpoint (bad magic)");
  const uint64_t size = get_u64(bytes.data() + 8);
  const uint64_t checksum = get_u64(bytes.data() + 16);
  DPT_CHECK(bytes.size() - kHeaderSize == size, DataError, "checkpoint ", origin, " is truncated or padded: ",
            "header says ", size, " payload bytes, file has ", bytes.size() - kHeaderSize);
  DPT_CHECK(checksum64(bytes.data() + kHeaderSize, size) == checksum, DataError, "checkpoint ", origin,
            " is corrupt: checksum mismatch");
}

Checkpoint decode(const Bytes& bytes, const std::string& origin) {
  NamedTensors entries = deserialize_named_tensors(payload_of(bytes, origin), "checkpoint " + origin);
  auto meta_entry = entries.find("meta");
  auto optimizer_entry = entries.find("optimizer");
  DPT_CHECK(meta_entry != entries.end() && optimizer_entry != entries.end(), DataError, "checkpoint ", origin,
            " lacks its meta or optimizer entry");
  Checkpoint checkpoint;
  try {
    auto meta = nlohmann::json::parse(tensor_string(meta_entry->second));
    checkpoint.epoch = meta.at("epoch").get<int64_t>();
    checkpoint.batch_in_epoch = meta.at("batch_in_epoch").get<int64_t>();
    checkpoint.step = meta.at("step").get<int64_t>();
    checkpoint.world_size = meta.at("world_size").get<int64_t>();
    checkpoint.seed = meta.at("seed").get<int64_t>();
    const auto& extra = meta.at("extra");
    checkpoint.global_batch = extra.value("global_batch", int64_t{0});
    checkpoint.epoch_offset = extra.value("epoch_offset", int64_t{0});
    if (extra.contains("loss_scale")) {
      checkpoint.loss_scale = extra.at("loss_scale").get<double>();
      checkpoint.loss_scale_growth_tracker = extra.value("loss_scale_clean_steps", int64_t{0});
    }
  } catch (const nlohmann::json::exception& e) {
    DPT_THROW(DataError, "checkpoint ", origin, " has unreadable metadata: ", e.what());
  }
  const std::string optimizer = tensor_string(optimizer_entry->second);
  checkpoint.legacy_optimizer.assign(optimizer.begin(), optimizer.end());
  for (auto& [name, tensor] : entries) {
    if (name.rfind("model.", 0) == 0) checkpoint.model.emplace(name.substr(6), tensor);
    if (name.rfind("rng.", 0) == 0) checkpoint.generator_states.emplace(name.substr(4), tensor);
  }
  if (auto rng = entries.find("rng"); rng != entries.end() && !checkpoint.generator_states.count("cpu/0")) {
    checkpoint.generator_states.emplace("cpu/0", rng->second);  // the oldest files: rank 0's only
  }
  return checkpoint;
}

Bytes encode_for_tests(const Checkpoint& checkpoint, const Bytes& optimizer_archive) {
  NamedTensors entries;
  for (const auto& [name, tensor] : checkpoint.model) entries.emplace("model." + name, tensor.detach().cpu());
  entries.emplace("optimizer", bytes_tensor(std::string(optimizer_archive.begin(), optimizer_archive.end())));
  for (const auto& [name, state] : checkpoint.generator_states) entries.emplace("rng." + name, state.cpu());
  nlohmann::json meta = {{"format", 1},
                         {"epoch", checkpoint.epoch},
                         {"batch_in_epoch", checkpoint.batch_in_epoch},
                         {"step", checkpoint.step},
                         {"world_size", checkpoint.world_size},
                         {"seed", checkpoint.seed.value_or(0)},
                         {"extra", {{"global_batch", checkpoint.global_batch}, {"epoch_offset", checkpoint.epoch_offset}}}};
  entries.emplace("meta", bytes_tensor(meta.dump()));
  Bytes payload = serialize_named_tensors(entries);
  Bytes out(kMagic, kMagic + sizeof(kMagic));
  put_u64(out, payload.size());
  put_u64(out, checksum64(payload.data(), payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

}  // namespace dpt::checkpoint_v1
