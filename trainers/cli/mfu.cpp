#include "mfu.h"

#include <algorithm>
#include <chrono>

#include "dptrain/core/error.h"

namespace dpt::cli {

double flops_per_token(const std::string& name, const ModelZooOptions& shape, Model& model) {
  int64_t parameters = 0, positions = 0;
  for (const auto& [key, p] : model.named_parameters()) {
    parameters += p.numel();
    if (key == "wpe_weight") positions = p.numel();
  }
  if (!is_builtin_language_model(name)) return 6.0 * static_cast<double>(parameters);
  const bool small = name == "gpt2-small";
  const double layers = small ? 12 : static_cast<double>(shape.gpt_layers);
  const double dim = small ? 768 : static_cast<double>(shape.gpt_dim);
  return 6.0 * static_cast<double>(parameters - positions) + 12.0 * layers * dim * static_cast<double>(shape.context);
}

namespace {

// TFLOP/s of the best of a few n x n matmuls in `dtype` (after one warm-up: kernel choice, allocation).
double timed_matmul_tflops(const torch::Device& device, torch::ScalarType dtype, int64_t n) {
  auto options = torch::TensorOptions().device(device).dtype(dtype);
  auto a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  torch::mm(a, b);
  sync();
  double best = 0;
  for (int repeat = 0; repeat < 5; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    torch::mm(a, b);
    sync();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 2.0 * static_cast<double>(n * n * n) / seconds / 1e12);
  }
  return best;
}

}  // namespace

Peak device_peak(double given, const torch::Device& device, torch::ScalarType dtype) {
  if (given > 0) return {given, "--peak-tflops"};
  const int64_t n = device.is_cuda() ? 8192 : 1024;
  const double peak = timed_matmul_tflops(device, dtype, n);
  // A CPU without bf16/fp16 units multiplies those types slower than fp32, while autocast's small
  // matmuls may still run at fp32 speed: the peak is the faster of the two (else MFU above 100%).
  if (!device.is_cuda() && dtype != torch::kFloat) {
    const double fp32 = timed_matmul_tflops(device, torch::kFloat, n);
    if (fp32 > peak) {
      return {fp32, detail::concat("a timed ", n, "x", n, " Float matmul on ", device.str(), ", faster here than ",
                                   c10::toString(dtype), "; --peak-tflops sets it")};
    }
  }
  return {peak, detail::concat("a timed ", n, "x", n, " ", c10::toString(dtype), " matmul on ", device.str(),
                               "; --peak-tflops sets it")};
}

}  // namespace dpt::cli
