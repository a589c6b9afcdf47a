#include "dptrain/core/data/tensor_files.h"

#include <torch/serialize.h>

#include <algorithm>
#include <cctype>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/serialize.h"

namespace dpt {
namespace {

torch::Tensor tensor_of(const c10::IValue& value, const std::string& what, const std::string& path) {
  DPT_CHECK(value.isTensor(), DataError, path, ": ", what, " is a ", value.tagKind(), ", not a tensor");
  auto tensor = value.toTensor();
  DPT_CHECK(tensor.dim() >= 1, DataError, path, ": ", what, " is a 0-d tensor; its first dimension must count "
            "the samples");
  return tensor.contiguous();
}

// A tensor, or a tuple or list of tensors (a model of several inputs or targets).
Tensors tensors_entry(const c10::Dict<c10::IValue, c10::IValue>& dict, const char* key, const std::string& path) {
  auto found = dict.find(key);
  DPT_CHECK(found != dict.end(), DataError, path, ": no \"", key,
            "\" entry (save it as torch.save({\"inputs\": X, \"targets\": Y}, path))");
  const auto& value = found->value();
  const std::string what = std::string("\"") + key + "\"";
  if (!value.isTuple() && !value.isList()) return tensor_of(value, what, path);
  std::vector<c10::IValue> items;
  if (value.isTuple()) {
    for (const auto& item : value.toTupleRef().elements()) items.push_back(item);
  } else {
    for (const auto& item : value.toListRef()) items.push_back(item);
  }
  DPT_CHECK(!items.empty(), DataError, path, ": ", what, " is an empty tuple");
  std::vector<torch::Tensor> parts;
  for (size_t i = 0; i < items.size(); ++i) parts.push_back(tensor_of(items[i], what + "[" + std::to_string(i) + "]", path));
  for (size_t i = 1; i < parts.size(); ++i) {
    DPT_CHECK(parts[i].size(0) == parts[0].size(0), DataError, path, ": ", what, "[", i, "] has ", parts[i].size(0),
              " samples, ", what, "[0] ", parts[0].size(0), " (the first dimension counts samples in all)");
  }
  return Tensors::tuple(std::move(parts));
}

}  // namespace

TensorDataset load_tensor_file(const std::string& path) {
  Bytes bytes = read_file(path);
  // Python's torch.save (OrderedDicts, integers of 2^31 or more) through load_torch_save; a file
  // of libtorch's pickle_save (TorchScript's tagged containers) through libtorch's own reader.
  c10::IValue loaded;
  try {
    loaded = load_torch_save(bytes, path);
  } catch (const DataError& first) {
    try {
      loaded = torch::pickle_load(bytes);
    } catch (const c10::Error&) {
      throw first;  // the first reader's message names what is wrong
    }
  }
  DPT_CHECK(loaded.isGenericDict(), DataError, path, ": holds a ", loaded.tagKind(),
            "; expected the dict torch.save({\"inputs\": X, \"targets\": Y}, path) writes");
  auto dict = loaded.toGenericDict();
  auto inputs = tensors_entry(dict, "inputs", path);
  auto targets = tensors_entry(dict, "targets", path);
  DPT_CHECK(inputs.samples() == targets.samples(), DataError, path, ": ", inputs.samples(), " inputs but ",
            targets.samples(), " targets (the first dimension counts samples in both)");
  TensorDataset data(inputs, targets, path);
  if (auto found = dict.find("num_classes"); found != dict.end()) {
    DPT_CHECK(found->value().isInt() && found->value().toInt() > 0, DataError, path,
              ": \"num_classes\" must be a positive int, got ", found->value().tagKind());
    data.set_num_classes(found->value().toInt());
  } else if (auto names = dict.find("classes"); names != dict.end()) {
    DPT_CHECK(names->value().isList() || names->value().isTuple(), DataError, path,
              ": \"classes\" must be a list of class names, got ", names->value().tagKind());
    const auto count = names->value().isList() ? names->value().toListRef().size()
                                               : names->value().toTupleRef().elements().size();
    data.set_num_classes(static_cast<int64_t>(count));
  }
  return data;
}

std::vector<std::string> list_shards(const std::string& directory, const std::string& split) {
  std::vector<std::pair<long long, std::string>> found;
  const std::string prefix = split + "-";
  for (const auto& name : fs::list_directory(directory)) {
    if (name.size() <= prefix.size() + 3 || name.compare(0, prefix.size(), prefix) != 0) continue;
    if (name.compare(name.size() - 3, 3, ".pt") != 0) continue;
    const std::string number = name.substr(prefix.size(), name.size() - prefix.size() - 3);
    if (number.empty() || !std::all_of(number.begin(), number.end(), [](char c) { return std::isdigit(c); })) continue;
    found.emplace_back(std::stoll(number), directory + "/" + name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [number, path] : found) paths.push_back(std::move(path));
  return paths;
}

}  // namespace dpt
