// The built-in models of dptrain: `mlp`, `cnn` and `resnet18` for images, `gpt` and `gpt2-small`
// for token sequences.
//
// Each is built directly as a TorchScript module (torch::jit::Module with registered parameters,
// buffers and a scripted forward), not as a torch::nn C++ module. One representation then serves
// every use: the Trainer and DDP train it through dpt::Model, `dptrain train --out` saves it with
// Module::save, and both `dptrain eval/infer` and PyTorch's `torch.jit.load` read that file back.
// No export step, no second class hierarchy to keep in sync. See docs/trainer.md.
//
//   auto net = dpt::make_builtin_model("cnn", {.in_channels = 1, .height = 28, .width = 28});
//   dpt::Model model(net);                 // train it
//   net.save("cnn.pt");                    // python: torch.jit.load("cnn.pt")
//
// Parameters are drawn from torch's global generator: call torch::manual_seed first for a
// reproducible model (every rank of a job builds the same one from the same seed; DDP still
// broadcasts rank 0's to be sure).
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dpt {

struct ModelZooOptions {
  int64_t in_channels = 1;
  int64_t height = 28;
  int64_t width = 28;
  int64_t num_classes = 10;  // the vocabulary for the GPTs
  // The GPTs: the context of the data (the positions of "gpt"; at most 1024 for "gpt2-small"), and
  // the size of "gpt" (--gpt-layers, --gpt-dim, --gpt-heads).
  int64_t context = 256;
  int64_t gpt_layers = 4;
  int64_t gpt_dim = 128;
  int64_t gpt_heads = 4;
};

// "mlp": flatten -> 1024 -> ReLU -> 1024 -> ReLU -> classes (hidden sizes of the DDP benchmark).
// "cnn": [conv3x3(32) -> BatchNorm -> ReLU -> maxpool] -> [conv3x3(64) -> BatchNorm -> ReLU ->
//        maxpool] -> fc(128) -> ReLU -> dropout(0.25) -> fc(classes). About 420k parameters;
//        > 90% test accuracy on Fashion-MNIST after 2-3 epochs (docs/trainer.md has measurements).
// "resnet18": the CIFAR variant of ResNet-18 (3x3 stem, no stem max-pool, BasicBlocks
//        [2,2,2,2] x [64,128,256,512], global average pool), for 1x28x28 or 3x32x32 inputs.
// "gpt": a decoder-only transformer (GPT-2's architecture, tied head) of gpt_layers x gpt_dim with
//        gpt_heads heads and `context` positions, a few minutes of training on a laptop CPU at the
//        defaults; "gpt2-small": GPT-2 small (12 layers, 768 wide, 12 heads, 1024 positions).
//        Both take int64 token ids [B, T] and give logits [B, T, num_classes].
// Throws InvalidArgumentError naming the accepted names for anything else.
torch::jit::Module make_builtin_model(const std::string& name, const ModelZooOptions& options = {});

bool is_builtin_model(const std::string& name);
// The GPTs, which take token windows instead of images.
bool is_builtin_language_model(const std::string& name);
const std::vector<std::string>& builtin_model_names();

// The MLP with explicit hidden sizes (make_builtin_model("mlp") uses {1024, 1024}).
torch::jit::Module make_mlp(int64_t in_features, const std::vector<int64_t>& hidden, int64_t num_classes);

}  // namespace dpt
