// Shared by the communicator tests: per-rank data with a known reduction, dtype tolerances.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "dptrain/parallel/comm/reduce_op.h"

namespace dpt::testing {

inline const std::vector<c10::ScalarType>& all_dtypes() {
  static const std::vector<c10::ScalarType> dtypes = {torch::kFloat32, torch::kFloat64, torch::kFloat16,
                                                      torch::kBFloat16, torch::kInt32,  torch::kInt64,
                                                      torch::kUInt8};
  return dtypes;
}

// Rank r's element i: small integers in {1, 2, 3}, so sums, products (<= 3^4) and averages over up
// to 4 ranks are representable in every dtype, uint8 and bfloat16 included.
inline double rank_value(int rank, int64_t index) { return 1.0 + static_cast<double>((rank + 2 * index) % 3); }

// Rank r's tensor of `numel` elements, in `dtype`.
inline torch::Tensor rank_tensor(int rank, int64_t numel, c10::ScalarType dtype, int64_t offset = 0) {
  auto index = torch::arange(offset, offset + numel, torch::kInt64);
  auto values = ((index * 2 + rank) % 3 + 1).to(torch::kDouble);
  return values.to(dtype);
}

// The reduction over ranks 0..world-1, computed in double on this process alone.
inline torch::Tensor expected_reduction(int world, int64_t numel, ReduceOp op, int64_t offset = 0) {
  auto result = rank_tensor(0, numel, torch::kDouble, offset);
  for (int r = 1; r < world; ++r) {
    auto x = rank_tensor(r, numel, torch::kDouble, offset);
    switch (op) {
      case ReduceOp::Sum:
      case ReduceOp::Avg: result = result + x; break;
      case ReduceOp::Product: result = result * x; break;
      case ReduceOp::Min: result = torch::minimum(result, x); break;
      case ReduceOp::Max: result = torch::maximum(result, x); break;
    }
  }
  if (op == ReduceOp::Avg) result = result / world;
  return result;
}

// Relative tolerance of one rounding in `dtype` (exact for integers).
inline double tolerance(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat16: return 1e-3;
    case torch::kBFloat16: return 8e-3;
    case torch::kFloat32: return 1e-6;
    case torch::kFloat64: return 1e-12;
    default: return 0.0;
  }
}

inline std::string dtype_name(c10::ScalarType dtype) { return c10::toString(dtype); }

}  // namespace dpt::testing
