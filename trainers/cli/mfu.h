// What the MFU of `dptrain train` on token data is measured against (private to the command):
// the model's FLOPs per token and one device's peak.
//
// FLOPs per token trained (forward + backward): for the built-in GPTs 6N + 12 L D T, the estimate
// of the PaLM paper that nanoGPT uses (N the parameters without the position embedding, L layers,
// D the width, T the context); for any other model 6N with N all its parameters (its attention,
// unknown here, left out: the MFU is then a lower bound). The peak: --peak-tflops, else a
// matmul timed on the training device in the training's precision (a measured ceiling rather
// than the datasheet's: the MFU then says how close training comes to what this device does).
#pragma once

#include <torch/torch.h>

#include <string>

#include "dptrain/core/model.h"
#include "dptrain/trainers/models/model_zoo.h"

namespace dpt::cli {

// `name` the --model given; `shape` the built-in's sizes (context, vocabulary, GPT sizes).
double flops_per_token(const std::string& name, const ModelZooOptions& shape, Model& model);

struct Peak {
  double tflops = 0;
  std::string how;  // "--peak-tflops" or "a timed 1024x1024 bfloat16 matmul on cpu"
};
// `given` > 0: that; else the best of a few timed square matmuls of `dtype` on `device`.
Peak device_peak(double given, const torch::Device& device, torch::ScalarType dtype);

}  // namespace dpt::cli
