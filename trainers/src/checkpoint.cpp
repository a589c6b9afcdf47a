#include "dptrain/trainers/checkpoint.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

constexpr char kMagic[8] = {'D', 'P', 'T', 'C', 'K', 'P', 'T', '1'};
constexpr size_t kHeaderSize = 24;
const char* kPrefix = "checkpoint-";
const char* kSuffix = ".dpt";

void put_u64(Bytes& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t get_u64(const char* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return value;
}

torch::Tensor bytes_tensor(const std::string& text) {
  auto tensor = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(tensor.data_ptr(), text.data(), text.size());
  return tensor;
}

torch::Tensor bytes_tensor(const Bytes& bytes) { return bytes_tensor(std::string(bytes.begin(), bytes.end())); }

std::string tensor_string(const torch::Tensor& tensor) {
  auto contiguous = tensor.contiguous();
  return std::string(static_cast<const char*>(contiguous.data_ptr()), static_cast<size_t>(contiguous.numel()));
}

// Verifies the header and checksum; returns the payload.
Bytes verified_payload(const Bytes& bytes, const std::string& origin) {
  DPT_CHECK(bytes.size() >= kHeaderSize, DataError, "checkpoint ", origin, " is truncated: ", bytes.size(),
            " bytes, shorter than its ", kHeaderSize, "-byte header");
  DPT_CHECK(std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0, DataError, "checkpoint ", origin,
            " is not a dptrain checkpoint (bad magic)");
  uint64_t size = get_u64(bytes.data() + 8);
  uint64_t checksum = get_u64(bytes.data() + 16);
  DPT_CHECK(bytes.size() - kHeaderSize == size, DataError, "checkpoint ", origin, " is truncated or padded: ",
            "header says ", size, " payload bytes, file has ", bytes.size() - kHeaderSize);
  uint64_t actual = checksum64(bytes.data() + kHeaderSize, size);
  DPT_CHECK(actual == checksum, DataError, "checkpoint ", origin, " is corrupt: checksum mismatch");
  return Bytes(bytes.begin() + kHeaderSize, bytes.end());
}

bool parse_step(const std::string& name, int64_t& step) {
  size_t prefix = std::strlen(kPrefix), suffix = std::strlen(kSuffix);
  if (name.size() <= prefix + suffix || name.compare(0, prefix, kPrefix) != 0 ||
      name.compare(name.size() - suffix, suffix, kSuffix) != 0) {
    return false;
  }
  std::string digits = name.substr(prefix, name.size() - prefix - suffix);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return false;
  step = std::stoll(digits);
  return true;
}

}  // namespace

Bytes encode_checkpoint(const Checkpoint& checkpoint) {
  NamedTensors entries;
  for (const auto& [name, tensor] : checkpoint.model) entries.emplace("model." + name, tensor.detach().cpu());
  entries.emplace("optimizer", bytes_tensor(checkpoint.optimizer));
  if (checkpoint.rng_state.defined()) entries.emplace("rng", checkpoint.rng_state.cpu());
  for (const auto& [name, state] : checkpoint.generator_states) entries.emplace("rng." + name, state.cpu());
  nlohmann::json meta = {{"format", 1},
                         {"epoch", checkpoint.epoch},
                         {"batch_in_epoch", checkpoint.batch_in_epoch},
                         {"step", checkpoint.step},
                         {"world_size", checkpoint.world_size},
                         {"seed", checkpoint.seed},
                         {"extra", nlohmann::json::parse(checkpoint.extra_json)}};
  entries.emplace("meta", bytes_tensor(meta.dump()));
  Bytes payload = serialize_named_tensors(entries);
  Bytes out(kMagic, kMagic + sizeof(kMagic));
  put_u64(out, payload.size());
  put_u64(out, checksum64(payload.data(), payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

Checkpoint decode_checkpoint(const Bytes& bytes, const std::string& origin) {
  NamedTensors entries = deserialize_named_tensors(verified_payload(bytes, origin), "checkpoint " + origin);
  Checkpoint checkpoint;
  auto meta_entry = entries.find("meta");
  auto optimizer_entry = entries.find("optimizer");
  DPT_CHECK(meta_entry != entries.end() && optimizer_entry != entries.end(), DataError, "checkpoint ", origin,
            " lacks its meta or optimizer entry");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(tensor_string(meta_entry->second));
    checkpoint.epoch = meta.at("epoch").get<int64_t>();
    checkpoint.batch_in_epoch = meta.at("batch_in_epoch").get<int64_t>();
    checkpoint.step = meta.at("step").get<int64_t>();
    checkpoint.world_size = meta.at("world_size").get<int64_t>();
    checkpoint.seed = meta.at("seed").get<int64_t>();
    checkpoint.extra_json = meta.at("extra").dump();
  } catch (const nlohmann::json::exception& e) {
    DPT_THROW(DataError, "checkpoint ", origin, " has unreadable metadata: ", e.what());
  }
  std::string optimizer = tensor_string(optimizer_entry->second);
  checkpoint.optimizer.assign(optimizer.begin(), optimizer.end());
  if (auto rng = entries.find("rng"); rng != entries.end()) checkpoint.rng_state = rng->second;
  for (auto& [name, tensor] : entries) {
    if (name.rfind("model.", 0) == 0) checkpoint.model.emplace(name.substr(6), tensor);
    if (name.rfind("rng.", 0) == 0) checkpoint.generator_states.emplace(name.substr(4), tensor);
  }
  return checkpoint;
}

Bytes save_optimizer_state(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream stream;
  archive.save_to(stream);
  std::string text = stream.str();
  return Bytes(text.begin(), text.end());
}

namespace {

// Moves each parameter's optimizer state onto that parameter's device.
void place_state_with_parameters(torch::optim::Optimizer& optimizer) {
  auto& states = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    for (auto& param : group.params()) {
      auto found = states.find(param.unsafeGetTensorImpl());
      if (found == states.end()) continue;
      const torch::Device device = param.device();
      auto moved = [device](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
      if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(found->second.get())) {
        sgd->momentum_buffer(moved(sgd->momentum_buffer()));
      } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(found->second.get())) {
        adam->exp_avg(moved(adam->exp_avg()));
        adam->exp_avg_sq(moved(adam->exp_avg_sq()));
        adam->max_exp_avg_sq(moved(adam->max_exp_avg_sq()));
      } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(found->second.get())) {
        adamw->exp_avg(moved(adamw->exp_avg()));
        adamw->exp_avg_sq(moved(adamw->exp_avg_sq()));
        adamw->max_exp_avg_sq(moved(adamw->max_exp_avg_sq()));
      }
    }
  }
}

}  // namespace

void load_optimizer_state(torch::optim::Optimizer& optimizer, const Bytes& bytes, const std::string& origin) {
  try {
    torch::serialize::InputArchive archive;
    std::istringstream stream(std::string(bytes.begin(), bytes.end()));
    archive.load_from(stream, torch::Device(torch::kCPU));  // not the saving rank's cuda:N
    optimizer.load(archive);
    place_state_with_parameters(optimizer);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    DPT_THROW(DataError, "checkpoint ", origin, ": optimizer state does not fit this optimizer (",
              what.substr(0, what.find('\n')), ")");
  }
}

CheckpointDirectory::CheckpointDirectory(std::string directory, int keep_last)
    : directory_(std::move(directory)), keep_last_(keep_last) {
  DPT_CHECK(!directory_.empty(), InvalidArgumentError, "--checkpoint-dir must not be empty");
  DPT_CHECK(keep_last_ >= 1, InvalidArgumentError, "--keep-checkpoints must be >= 1, got ", keep_last_);
}

void CheckpointDirectory::prepare() const {
  try {
    fs::create_directories(directory_);
  } catch (const Error& e) {
    DPT_THROW(InvalidArgumentError, "--checkpoint-dir ", directory_, " cannot be created: ", e.what());
  }
  DPT_CHECK(fs::parent_is_writable(fs::join(directory_, "probe")), InvalidArgumentError, "--checkpoint-dir ",
            directory_, " is not writable");
}

std::string CheckpointDirectory::path_for_step(int64_t step) const {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%010lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return fs::join(directory_, name);
}

std::string CheckpointDirectory::write(const Checkpoint& checkpoint) const {
  std::string path = path_for_step(checkpoint.step);
  write_file_atomic(path, encode_checkpoint(checkpoint));
  auto files = list();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < files.size(); ++i) fs::remove_file(files[i]);
  return path;
}

std::vector<std::string> CheckpointDirectory::list() const {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(directory_)) return {};
  for (const auto& name : fs::list_directory(directory_)) {
    int64_t step = 0;
    if (parse_step(name, step)) found.emplace_back(step, fs::join(directory_, name));
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& entry : found) paths.push_back(entry.second);
  return paths;
}

std::optional<std::string> CheckpointDirectory::latest() const {
  auto files = list();
  if (files.empty()) return std::nullopt;
  return files.back();
}

Bytes read_checkpoint_file(const std::string& path, const std::string& directory, std::string& chosen) {
  if (!path.empty() && path != "latest") {
    Bytes bytes = read_file(path);
    verified_payload(bytes, path);
    chosen = path;
    return bytes;
  }
  DPT_CHECK(!directory.empty(), InvalidArgumentError,
            "--resume without a file needs --checkpoint-dir to look for the latest checkpoint");
  auto files = CheckpointDirectory(directory).list();
  DPT_CHECK(!files.empty(), InvalidArgumentError, "--resume: no checkpoint-*.dpt files in ", directory);
  std::string first_error;
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      Bytes bytes = read_file(*it);
      verified_payload(bytes, *it);
      if (!first_error.empty()) DPT_LOG_WARN("resuming from the previous intact checkpoint {}", *it);
      chosen = *it;
      return bytes;
    } catch (const Error& e) {
      DPT_LOG_WARN("{}", e.what());
      if (first_error.empty()) first_error = e.what();
    }
  }
  DPT_THROW(DataError, "--resume: no intact checkpoint in ", directory, " (newest: ", first_error, ")");
}

}  // namespace dpt
