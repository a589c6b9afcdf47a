// Shared pieces of the ShardedOptimizer tests: optimizers, sharding configurations (one unit, and
// one unit per parameter so that padding and unit order are exercised), and a training loop that
// runs a sharded DDP rank beside plain DDP and one process on the global batch.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "ddp_test_util.h"
#include "dptrain/parallel/ddp/reducer.h"
#include "dptrain/parallel/zero/sharded_optimizer.h"

namespace dpt::testing::ddp {

using MakeOptimizer = std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;

inline MakeOptimizer sgd_momentum() {
  return [](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3));
  };
}

inline MakeOptimizer adam() {
  return [](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(0.01));
  };
}

// Units of one byte: every parameter in a unit of its own.
inline ShardingOptions tiny_units(int stage) {
  return ShardingOptions().stage(stage).unit_cap_mb(1e-9).first_unit_cap_mb(1e-9);
}

}  // namespace dpt::testing::ddp
