#include "dptrain/parallel/ddp/bucket.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "dptrain/core/error.h"

namespace dpt {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<torch::Tensor>& params,
                                                const std::vector<size_t>& order, size_t first_cap_bytes,
                                                size_t cap_bytes) {
  struct Open {
    std::vector<size_t> indices;
    size_t bytes = 0;
    bool had_first = false;
  };
  // Keyed by (device string, dtype) so that the key order is the same on every rank.
  std::map<std::pair<std::string, int>, Open> open;
  std::vector<std::vector<size_t>> closed;
  for (size_t index : order) {
    DPT_ASSERT(index < params.size(), "bucket order names parameter ", index);
    const auto& param = params[index];
    auto& bucket = open[{param.device().str(), static_cast<int>(param.scalar_type())}];
    bucket.indices.push_back(index);
    bucket.bytes += static_cast<size_t>(param.numel()) * param.element_size();
    const size_t cap = bucket.had_first ? cap_bytes : first_cap_bytes;
    if (bucket.bytes >= cap) {
      closed.push_back(std::move(bucket.indices));
      bucket.indices.clear();
      bucket.bytes = 0;
      bucket.had_first = true;
    }
  }
  for (auto& [key, bucket] : open) {
    if (!bucket.indices.empty()) closed.push_back(std::move(bucket.indices));
  }
  std::vector<size_t> position(params.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) position[order[i]] = i;
  std::stable_sort(closed.begin(), closed.end(), [&](const auto& a, const auto& b) {
    return position[a.front()] < position[b.front()];
  });
  return closed;
}

}  // namespace dpt
