#include "dptrain/trainers/checkpoint/checkpoint.h"

#include <sstream>

#include "checkpoint/checkpoint_v1.h"
#include "dptrain/core/config.h"
#include "dptrain/core/error.h"
#include "dptrain/trainers/optim/optimizer_state_dict.h"

namespace dpt {
namespace {

using c10::IValue;
using GenericDict = c10::impl::GenericDict;

GenericDict string_dict() { return GenericDict(c10::StringType::get(), c10::AnyType::get()); }

constexpr int64_t kFormat = 2;

// "cpu/0", "cpu/1", "cuda/0" -> {"cpu": [s0, s1], "cuda": [s0]}: per device kind, a list by rank.
GenericDict rng_section(const NamedTensors& states) {
  std::map<std::string, std::map<int64_t, torch::Tensor>> by_kind;
  for (const auto& [name, state] : states) {
    const auto slash = name.find('/');
    if (slash == std::string::npos) continue;
    by_kind[name.substr(0, slash)][std::stoll(name.substr(slash + 1))] = state.cpu();
  }
  GenericDict out = string_dict();
  for (auto& [kind, by_rank] : by_kind) {
    c10::impl::GenericList list(c10::AnyType::get());  // a plain list for Python (no typed-list tag)
    for (auto& [rank, state] : by_rank) list.push_back(state);
    out.insert(kind, list);
  }
  return out;
}

// --- reading a torch.save dict: each accessor names the key and the file --------------------

struct Reader {
  GenericDict dict;
  std::string where;  // "checkpoint ckpt/checkpoint-0000000120.pt"

  std::optional<IValue> find(const std::string& key) const {
    auto found = dict.find(key);
    if (found == dict.end() || found->value().isNone()) return std::nullopt;
    return found->value();
  }
  IValue at(const std::string& key) const {
    auto value = find(key);
    DPT_CHECK(value.has_value(), DataError, where, " has no '", key, "'");
    return *value;
  }
  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    auto value = find(key);
    if (!value && fallback) return *fallback;
    DPT_CHECK(value.has_value(), DataError, where, " has no '", key, "'");
    DPT_CHECK(value->isInt(), DataError, where, ": '", key, "' is not an integer");
    return value->toInt();
  }
  double number(const std::string& key, double fallback) const {
    auto value = find(key);
    if (!value) return fallback;
    DPT_CHECK(value->isDouble() || value->isInt(), DataError, where, ": '", key, "' is not a number");
    return value->isDouble() ? value->toDouble() : static_cast<double>(value->toInt());
  }
  std::optional<Reader> section(const std::string& key) const {
    auto value = find(key);
    if (!value) return std::nullopt;
    DPT_CHECK(value->isGenericDict(), DataError, where, ": '", key, "' is not a dict");
    return Reader{value->toGenericDict(), where + " '" + key + "'"};
  }
};

NamedTensors read_model(const Reader& top) { return named_tensors_from(top.at("model"), top.where + ": 'model'"); }

void read_rng(const Reader& rng, NamedTensors& states) {
  for (const auto& entry : rng.dict) {
    DPT_CHECK(entry.key().isString() && entry.value().isList(), DataError, rng.where,
              " is not a dict of generator-state lists");
    const auto list = entry.value().toListRef();
    for (size_t rank = 0; rank < list.size(); ++rank) {
      DPT_CHECK(list[rank].isTensor(), DataError, rng.where, " holds a non-tensor generator state");
      states.emplace(entry.key().toStringRef() + "/" + std::to_string(rank), list[rank].toTensor());
    }
  }
}

// "callbacks": {"early_stopping": {"monitor", "best_score", "best_step", "wait_count"}, ...}.
GenericDict callbacks_section(const std::map<std::string, MonitorState>& callbacks) {
  GenericDict out = string_dict();
  for (const auto& [name, state] : callbacks) {
    GenericDict entry = string_dict();
    entry.insert("monitor", state.metric);
    entry.insert("best_score", state.best ? IValue(*state.best) : IValue());
    entry.insert("best_step", state.best_step);
    entry.insert("wait_count", state.evaluations_without_improvement);
    out.insert(name, entry);
  }
  return out;
}

void read_callbacks(const Reader& callbacks, std::map<std::string, MonitorState>& states) {
  for (const auto& entry : callbacks.dict) {
    DPT_CHECK(entry.key().isString(), DataError, callbacks.where, " has a key that is not a string");
    auto section = callbacks.section(entry.key().toStringRef());
    if (!section) continue;
    MonitorState state;
    auto monitor = section->at("monitor");
    DPT_CHECK(monitor.isString(), DataError, section->where, ": 'monitor' is not a string");
    state.metric = monitor.toStringRef();
    if (section->find("best_score")) state.best = section->number("best_score", 0.0);
    state.best_step = section->integer("best_step", 0);
    state.evaluations_without_improvement = section->integer("wait_count", 0);
    states.emplace(entry.key().toStringRef(), state);
  }
}

Checkpoint decode_v2(const Bytes& bytes, const std::string& origin) {
  const std::string where = "checkpoint " + origin;
  IValue value = load_torch_save(bytes, where);
  DPT_CHECK(value.isGenericDict(), DataError, where, " is not a dict (torch.save of a checkpoint dict)");
  Reader top{value.toGenericDict(), where};
  Checkpoint checkpoint;
  checkpoint.model = read_model(top);
  checkpoint.optimizer = top.at("optimizer");
  checkpoint.epoch = top.integer("epoch");
  checkpoint.step = top.integer("step");
  if (auto sampler = top.section("sampler")) {
    checkpoint.batch_in_epoch = sampler->integer("batch_in_epoch", 0);
    if (sampler->find("seed")) checkpoint.seed = sampler->integer("seed");
    checkpoint.world_size = sampler->integer("world_size", 1);
    checkpoint.global_batch = sampler->integer("global_batch", 0);
    checkpoint.epoch_offset = sampler->integer("epoch_offset", 0);
  }
  if (auto scaler = top.section("scaler")) {
    checkpoint.loss_scale = scaler->number("scale", 0.0);
    checkpoint.loss_scale_growth_tracker = scaler->integer("_growth_tracker", 0);
    checkpoint.loss_scale_growth_interval = scaler->integer("growth_interval", 2000);
  }
  if (auto rng = top.section("rng")) read_rng(*rng, checkpoint.generator_states);
  if (auto scheduler = top.find("scheduler")) checkpoint.scheduler = *scheduler;
  if (auto callbacks = top.section("callbacks")) read_callbacks(*callbacks, checkpoint.callbacks);
  if (auto about = top.section("dptrain")) {
    const int64_t format = about->integer("format", kFormat);
    DPT_CHECK(format <= kFormat, DataError, where, " has format ", format, ", newer than this dptrain reads (",
              kFormat, "): update dptrain");
  }
  return checkpoint;
}

}  // namespace

Bytes encode_checkpoint(const Checkpoint& checkpoint) {
  GenericDict model = state_dict_for_pytorch(checkpoint.model);
  GenericDict sampler = string_dict();
  sampler.insert("batch_in_epoch", checkpoint.batch_in_epoch);
  if (checkpoint.seed) sampler.insert("seed", *checkpoint.seed);
  sampler.insert("world_size", checkpoint.world_size);
  sampler.insert("global_batch", checkpoint.global_batch);
  sampler.insert("epoch_offset", checkpoint.epoch_offset);
  GenericDict about = string_dict();
  about.insert("format", kFormat);
  about.insert("version", std::string(DPTRAIN_VERSION));

  GenericDict out = string_dict();
  out.insert("model", model);
  out.insert("optimizer", checkpoint.optimizer);
  out.insert("epoch", checkpoint.epoch);
  out.insert("step", checkpoint.step);
  out.insert("sampler", sampler);
  if (!checkpoint.scheduler.isNone()) out.insert("scheduler", checkpoint.scheduler);
  if (checkpoint.loss_scale > 0) {  // torch.amp.GradScaler.state_dict()'s keys
    GenericDict scaler = string_dict();
    scaler.insert("scale", checkpoint.loss_scale);
    scaler.insert("growth_factor", 2.0);
    scaler.insert("backoff_factor", 0.5);
    scaler.insert("growth_interval", checkpoint.loss_scale_growth_interval);
    scaler.insert("_growth_tracker", checkpoint.loss_scale_growth_tracker);
    out.insert("scaler", scaler);
  }
  out.insert("rng", rng_section(checkpoint.generator_states));
  if (!checkpoint.callbacks.empty()) out.insert("callbacks", callbacks_section(checkpoint.callbacks));
  out.insert("dptrain", about);
  return save_for_pytorch(out);
}

void verify_checkpoint(const Bytes& bytes, const std::string& origin) {
  if (checkpoint_v1::is_v1(bytes)) return checkpoint_v1::verify(bytes, origin);
  DPT_CHECK(is_zip_archive(bytes), DataError, "checkpoint ", origin,
            " is neither a torch.save file nor a dptrain checkpoint (", bytes.size(), " bytes)");
  verify_zip_archive(bytes, "checkpoint " + origin);
}

Checkpoint decode_checkpoint(const Bytes& bytes, const std::string& origin) {
  verify_checkpoint(bytes, origin);
  if (checkpoint_v1::is_v1(bytes)) return checkpoint_v1::decode(bytes, origin);
  return decode_v2(bytes, origin);
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const Checkpoint& checkpoint, const std::string& origin) {
  if (checkpoint.legacy_optimizer.empty()) {
    load_optimizer_state_dict(optimizer, checkpoint.optimizer, "checkpoint " + origin);
    return;
  }
  try {
    torch::serialize::InputArchive archive;
    std::istringstream stream(std::string(checkpoint.legacy_optimizer.begin(), checkpoint.legacy_optimizer.end()));
    archive.load_from(stream, torch::Device(torch::kCPU));  // not the saving rank's cuda:N
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    DPT_THROW(DataError, "checkpoint ", origin, ": optimizer state does not fit this optimizer (",
              what.substr(0, what.find('\n')), ")");
  }
  // Through PyTorch's layout and back: the state lands on each parameter's device.
  load_optimizer_state_dict(optimizer, optimizer_state_dict(optimizer), "checkpoint " + origin);
}

}  // namespace dpt
