#include "dptrain/parallel/data_parallel/scatter_gather.h"

#include <algorithm>
#include <atomic>
#include <string>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

// The pieces of one value for each replica. `split` is false for a value given whole to every
// replica (then pieces.size() == number of devices and it does not limit the replica count).
struct Scattered {
  std::vector<c10::IValue> pieces;
  bool split = false;
};

Scattered scatter_value(const c10::IValue& value, const std::vector<torch::Device>& devices, const std::string& where) {
  const auto parts = static_cast<int64_t>(devices.size());
  if (value.isTensor()) {
    const auto& tensor = value.toTensor();
    DPT_CHECK(tensor.dim() > 0, InvalidArgumentError, "DataParallel: input ", where,
              " is a 0-dim tensor; it cannot be split along dim 0 over the devices");
    auto sizes = chunk_sizes(tensor.size(0), parts);
    auto chunks = tensor.split_with_sizes(sizes, /*dim=*/0);
    Scattered out{{}, true};
    for (size_t i = 0; i < chunks.size(); ++i) out.pieces.emplace_back(chunks[i].to(devices[i], /*non_blocking=*/true));
    return out;
  }
  if (value.isTuple() || value.isList()) {
    const bool is_tuple = value.isTuple();
    std::vector<c10::IValue> elements;
    if (is_tuple) {
      const auto& items = value.toTupleRef().elements();
      elements.assign(items.begin(), items.end());
    } else {
      for (const auto& item : value.toListRef()) elements.push_back(item);
    }
    std::vector<Scattered> parts_of;
    size_t count = devices.size();
    bool any_split = false;
    for (size_t e = 0; e < elements.size(); ++e) {
      parts_of.push_back(scatter_value(elements[e], devices, where + "[" + std::to_string(e) + "]"));
      if (parts_of.back().split) {
        count = std::min(count, parts_of.back().pieces.size());
        any_split = true;
      }
    }
    if (!any_split) return {std::vector<c10::IValue>(devices.size(), value), false};
    Scattered out{{}, true};
    for (size_t i = 0; i < count; ++i) {
      std::vector<c10::IValue> items;
      for (auto& part : parts_of) items.push_back(part.pieces[i]);
      if (is_tuple) {
        out.pieces.emplace_back(c10::ivalue::Tuple::create(std::move(items)));
      } else {
        c10::impl::GenericList list(value.toList().elementType());
        for (auto& item : items) list.push_back(std::move(item));
        out.pieces.emplace_back(std::move(list));
      }
    }
    return out;
  }
  DPT_CHECK(!value.isGenericDict(), InvalidArgumentError, "DataParallel: input ", where,
            " is a dict; pass tensors, tuples or lists of tensors");
  return {std::vector<c10::IValue>(devices.size(), value), false};
}

c10::IValue gather_value(const std::vector<c10::IValue>& outputs, torch::Device device, const std::string& where) {
  const auto& first = outputs.front();
  auto same_kind = [&](auto predicate) {
    for (size_t r = 0; r < outputs.size(); ++r) {
      DPT_CHECK(predicate(outputs[r]), InvalidArgumentError, "DataParallel: output ", where, " of replica ", r,
                " is a ", outputs[r].tagKind(), " but replica 0 returned a ", first.tagKind());
    }
  };
  if (first.isTensor()) {
    same_kind([](const c10::IValue& v) { return v.isTensor(); });
    std::vector<torch::Tensor> moved;
    // Asynchronous copies only between devices: a non-blocking copy to the CPU may return before
    // the data has arrived, and the caller reads CPU tensors right away.
    const bool non_blocking = !device.is_cpu();
    for (const auto& output : outputs) moved.push_back(output.toTensor().to(device, non_blocking));
    if (moved.size() == 1) return moved.front();
    if (moved.front().dim() == 0) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        DPT_LOG_WARN(
            "DataParallel: the replicas returned 0-dim tensors (e.g. a loss each); gathering them as a vector");
      }
      return torch::stack(moved);
    }
    return torch::cat(moved, /*dim=*/0);
  }
  if (first.isTuple() || first.isList()) {
    const bool is_tuple = first.isTuple();
    auto elements_of = [&](const c10::IValue& v) {
      std::vector<c10::IValue> items;
      if (is_tuple) {
        const auto& elements = v.toTupleRef().elements();
        items.assign(elements.begin(), elements.end());
      } else {
        for (const auto& item : v.toListRef()) items.push_back(item);
      }
      return items;
    };
    same_kind([&](const c10::IValue& v) { return is_tuple ? v.isTuple() : v.isList(); });
    std::vector<std::vector<c10::IValue>> per_replica;
    for (const auto& output : outputs) per_replica.push_back(elements_of(output));
    std::vector<c10::IValue> gathered;
    for (size_t e = 0; e < per_replica.front().size(); ++e) {
      std::vector<c10::IValue> column;
      for (size_t r = 0; r < per_replica.size(); ++r) {
        DPT_CHECK(per_replica[r].size() == per_replica.front().size(), InvalidArgumentError, "DataParallel: output ",
                  where, " of replica ", r, " has ", per_replica[r].size(), " elements, replica 0 returned ",
                  per_replica.front().size());
        column.push_back(per_replica[r][e]);
      }
      gathered.push_back(gather_value(column, device, where + "[" + std::to_string(e) + "]"));
    }
    if (is_tuple) return c10::ivalue::Tuple::create(std::move(gathered));
    c10::impl::GenericList list(first.toList().elementType());
    for (auto& item : gathered) list.push_back(std::move(item));
    return list;
  }
  if (first.isNone()) {
    same_kind([](const c10::IValue& v) { return v.isNone(); });
    return first;
  }
  DPT_THROW(InvalidArgumentError, "DataParallel: cannot gather output ", where, " of type ", first.tagKind(),
            "; return tensors, tuples or lists of tensors, or None");
}

}  // namespace

std::vector<int64_t> chunk_sizes(int64_t batch, int64_t parts) {
  DPT_CHECK(parts > 0, InvalidArgumentError, "chunk_sizes: parts must be > 0, got ", parts);
  DPT_CHECK(batch >= 0, InvalidArgumentError, "chunk_sizes: batch must be >= 0, got ", batch);
  if (batch == 0) return {0};
  const int64_t chunk = (batch + parts - 1) / parts;
  std::vector<int64_t> sizes;
  for (int64_t begin = 0; begin < batch; begin += chunk) sizes.push_back(std::min(chunk, batch - begin));
  return sizes;
}

std::vector<std::vector<c10::IValue>> scatter(const std::vector<c10::IValue>& inputs,
                                              const std::vector<torch::Device>& devices) {
  DPT_CHECK(!devices.empty(), InvalidArgumentError, "DataParallel scatter: the device list is empty");
  std::vector<Scattered> per_argument;
  size_t count = devices.size();
  bool any_split = false;
  for (size_t a = 0; a < inputs.size(); ++a) {
    per_argument.push_back(scatter_value(inputs[a], devices, "#" + std::to_string(a)));
    if (per_argument.back().split) {
      count = std::min(count, per_argument.back().pieces.size());
      any_split = true;
    }
  }
  if (!any_split) count = 1;
  std::vector<std::vector<c10::IValue>> replicas(count);
  for (size_t r = 0; r < count; ++r) {
    for (auto& argument : per_argument) replicas[r].push_back(argument.pieces[r]);
  }
  return replicas;
}

c10::IValue gather(const std::vector<c10::IValue>& outputs, torch::Device device) {
  DPT_CHECK(!outputs.empty(), InvalidArgumentError, "DataParallel gather: no outputs");
  return gather_value(outputs, device, "#0");
}

}  // namespace dpt
