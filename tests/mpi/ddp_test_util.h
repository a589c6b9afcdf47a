// Shared pieces of the DDP tests: tiny models, per-step global batches every rank can regenerate,
// and the single-process references they are compared with.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <vector>

#include "dptrain/core/model.h"
#include "dptrain/parallel/ddp/distributed_data_parallel.h"
#include "test_support.h"

namespace dpt::testing::ddp {

constexpr int64_t kIn = 6;
constexpr int64_t kOut = 3;
constexpr int64_t kLocalBatch = 4;

inline torch::nn::Sequential make_mlp(uint64_t seed = 7) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(kIn, 10), torch::nn::Tanh(), torch::nn::Linear(10, 8),
                               torch::nn::Tanh(), torch::nn::Linear(8, kOut));
}

// The global batch of step `step` (world_size * kLocalBatch samples); identical on every rank.
struct Batch {
  torch::Tensor x, y;
  Batch chunk(int index, int64_t size = kLocalBatch) const {
    return {x.narrow(0, index * size, size), y.narrow(0, index * size, size)};
  }
  // What a DDP rank feeds its model: the batch on test_device() (references stay on the CPU).
  Batch to_test_device() const { return {x.to(test_device()), y.to(test_device())}; }
};

// A module moved to test_device(): the CPU, or the rank's GPU when the suite runs on CUDA
// (scripts/gpu/build-and-test.sh); its single-process reference stays on the CPU.
template <typename ModuleHolder>
ModuleHolder on_test_device(ModuleHolder module) {
  module->to(test_device());
  return module;
}
inline Batch global_batch(int step, int world_size, int64_t local = kLocalBatch, uint64_t seed = 1000) {
  auto gen = torch::make_generator<torch::CPUGeneratorImpl>(seed + static_cast<uint64_t>(step));
  auto x = torch::randn({world_size * local, kIn}, gen);
  auto y = torch::randn({world_size * local, kOut}, gen);
  return {x, y};
}

inline void sgd_step(const std::vector<torch::Tensor>& params, double lr) {
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    if (p.grad().defined()) {
      p.sub_(p.grad(), lr);
      p.mutable_grad().zero_();
    }
  }
}

// Every parameter of `actual` within `tolerance` (max_relative_error) of `expected`.
inline void expect_params_near(const std::vector<torch::Tensor>& actual, const std::vector<torch::Tensor>& expected,
                               double tolerance) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    const double error = max_relative_error(actual[i], expected[i]);
    EXPECT_LT(error, tolerance) << "parameter " << i << " on rank " << world()->rank();
  }
}

// The parameters moved: guards against a test that compares two untouched models.
inline void expect_changed(const std::vector<torch::Tensor>& now, const std::vector<torch::Tensor>& initial) {
  double change = 0;
  for (size_t i = 0; i < now.size(); ++i) change = std::max(change, max_relative_error(now[i], initial[i]));
  EXPECT_GT(change, 1e-4) << "training did not change the parameters";
}

inline std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> copies;
  for (const auto& p : params) copies.push_back(p.detach().clone());
  return copies;
}

}  // namespace dpt::testing::ddp
