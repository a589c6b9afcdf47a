#include "shard_layout.h"

#include <numeric>

#include "dptrain/parallel/ddp/bucket.h"

namespace dpt::zero {

ShardLayout::ShardLayout(const std::vector<torch::Tensor>& params, int world, size_t first_unit_bytes,
                         size_t unit_bytes)
    : param_offset(params.size(), 0), unit_of(params.size(), 0), world_size(world) {
  std::vector<size_t> order(params.size());
  std::iota(order.rbegin(), order.rend(), size_t{0});  // reverse registration order, as DDP
  for (auto& indices : assign_buckets(params, order, first_unit_bytes, unit_bytes)) {
    ShardUnit unit;
    unit.params = std::move(indices);
    unit.offset = flat_elements;
    unit.shard_offset = shard_elements;
    int64_t elements = 0;
    for (size_t index : unit.params) {
      param_offset[index] = flat_elements + elements;
      unit_of[index] = units.size();
      elements += params[index].numel();
    }
    unit.piece = (elements + world - 1) / world;
    flat_elements += unit.piece * world;
    shard_elements += unit.piece;
    real_elements += elements;
    units.push_back(std::move(unit));
  }
}

torch::Tensor ShardLayout::unit_of_flat(const torch::Tensor& flat, size_t unit) const {
  return flat.narrow(0, units[unit].offset, units[unit].piece * world_size);
}

torch::Tensor ShardLayout::piece_of_flat(const torch::Tensor& flat, size_t unit, int rank) const {
  return flat.narrow(0, units[unit].offset + rank * units[unit].piece, units[unit].piece);
}

torch::Tensor ShardLayout::param_of_flat(const torch::Tensor& flat, size_t param, const torch::Tensor& like) const {
  return flat.narrow(0, param_offset[param], like.numel()).view(like.sizes());
}

torch::Tensor ShardLayout::piece_of_shard(const torch::Tensor& shard, size_t unit) const {
  return shard.narrow(0, units[unit].shard_offset, units[unit].piece);
}

}  // namespace dpt::zero
