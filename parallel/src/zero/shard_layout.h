// Where each parameter, and each rank's shard, lies in a ShardedOptimizer's flat buffers.
//
// The parameters are grouped into units with DDP's bucket rule (assign_buckets in reverse
// registration order, the order backward produces gradients: a first unit of ~1 MB, then ~25 MB).
// The flat buffers hold the units one after another, each padded to a multiple of the world size;
// rank r owns the r-th of the world-size equal, contiguous pieces of every unit. So:
//   - each unit is reduce-scattered on its own, as soon as backward has produced its gradients,
//     with equal counts (what NCCL and MPI_Reduce_scatter_block take);
//   - every rank owns the same number of elements (balanced by bytes to within one element per
//     unit), and the layout depends only on the parameters' shapes and the world size.
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <vector>

namespace dpt::zero {

struct ShardUnit {
  std::vector<size_t> params;  // indices into the parameter list, in flat order
  int64_t offset = 0;          // first element of the unit in the flat buffers
  int64_t piece = 0;           // elements each rank owns (the unit's padded length / world size)
  int64_t shard_offset = 0;    // where the rank's piece lies in its shard vector (the same on every rank)
};

struct ShardLayout {
  ShardLayout(const std::vector<torch::Tensor>& params, int world_size, size_t first_unit_bytes, size_t unit_bytes);

  std::vector<ShardUnit> units;
  std::vector<int64_t> param_offset;  // first element of each parameter in the flat buffers
  std::vector<size_t> unit_of;        // the unit of each parameter
  int world_size = 1;
  int64_t flat_elements = 0;   // the flat buffers' length (padding included)
  int64_t shard_elements = 0;  // elements each rank owns
  int64_t real_elements = 0;   // the parameters' elements

  // Views of a flat buffer: a unit, rank `rank`'s piece of it, and a parameter (shaped like it).
  torch::Tensor unit_of_flat(const torch::Tensor& flat, size_t unit) const;
  torch::Tensor piece_of_flat(const torch::Tensor& flat, size_t unit, int rank) const;
  torch::Tensor param_of_flat(const torch::Tensor& flat, size_t param, const torch::Tensor& like) const;
  // A unit's piece of a shard vector (shard_elements long).
  torch::Tensor piece_of_shard(const torch::Tensor& shard, size_t unit) const;
};

}  // namespace dpt::zero
