#include <gtest/gtest.h>
#include <torch/torch.h>

TEST(Cuda, DeviceRunsAKernel_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto x = torch::ones({1024}, torch::kCUDA);
  EXPECT_EQ((x * 2).sum().item<float>(), 2048.0f);
}
