// DataParallel on CUDA devices: every visible GPU, and one GPU named twice (two replicas, two
// threads, one device), checked against the unwrapped module on the full batch. Skips without CUDA.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "dptrain/core/error.h"
#include "dptrain/core/model.h"
#include "dptrain/parallel/data_parallel/data_parallel.h"
#include "test_support.h"

namespace {

using dpt::testing::max_relative_error;
constexpr double kTolerance = 1e-5;

torch::nn::Sequential net() {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)), torch::nn::ReLU(),
                               torch::nn::Flatten(), torch::nn::Linear(4 * 6 * 6, 16), torch::nn::Tanh(),
                               torch::nn::Linear(16, 3));
}

void expect_equivalent_training(const std::vector<torch::Device>& devices) {
  const torch::Device first = devices.front();
  torch::manual_seed(0);
  dpt::Model model(net());
  model.to(first);
  auto reference = model.clone(first);
  dpt::DataParallel dp(model, devices);
  torch::optim::SGD sgd(model.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::optim::SGD reference_sgd(reference.parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  for (int step = 0; step < 3; ++step) {
    auto input = torch::randn({13, 1, 6, 6}, first);
    auto target = torch::randn({13, 3}, first);
    auto output = dp.forward(input);
    auto expected = reference.forward(input);
    EXPECT_EQ(output.device(), first);
    EXPECT_LT(max_relative_error(output.cpu(), expected.cpu()), kTolerance);
    sgd.zero_grad();
    reference_sgd.zero_grad();
    torch::mse_loss(output, target).backward();
    torch::mse_loss(expected, target).backward();
    auto got = model.named_parameters();
    auto want = reference.named_parameters();
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(got[i].second.grad().defined()) << got[i].first;
      EXPECT_LT(max_relative_error(got[i].second.grad().cpu(), want[i].second.grad().cpu()), kTolerance)
          << got[i].first;
    }
    sgd.step();
    reference_sgd.step();
  }
}

TEST(DataParallelCuda, AllVisibleDevicesMatchTheUnwrappedModule_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<torch::Device> devices;
  for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i)
    devices.emplace_back(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
  expect_equivalent_training(devices);
}

TEST(DataParallelCuda, OneDeviceTwiceMatchesTheUnwrappedModule_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_equivalent_training({torch::Device("cuda:0"), torch::Device("cuda:0")});
}

TEST(DataParallelCuda, DefaultDeviceListIsEveryVisibleGpu_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  dpt::Model model(net());
  model.to(torch::Device("cuda:0"));
  dpt::DataParallel dp(model);
  EXPECT_EQ(dp.devices().size(), static_cast<size_t>(torch::cuda::device_count()));
  EXPECT_EQ(dp.forward(torch::randn({5, 1, 6, 6}, torch::kCUDA)).size(0), 5);
}

TEST(DataParallelCuda, ModuleNotOnTheFirstDeviceIsAClearError_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  dpt::Model model(net());  // on the CPU
  EXPECT_THROW(dpt::DataParallel(model, {torch::Device("cuda:0")}), dpt::InvalidArgumentError);
}

}  // namespace
