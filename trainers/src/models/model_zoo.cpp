#include "dptrain/trainers/models/model_zoo.h"

#include <torch/torch.h>

#include <cmath>
#include <memory>

#include "dptrain/core/error.h"
#include "models/gpt.h"

namespace dpt {
namespace {

using torch::jit::Module;
using CompilationUnitPtr = std::shared_ptr<torch::jit::CompilationUnit>;

// Every module of one model shares one compilation unit; class names are mangled so that two
// blocks with the same name (ResNet's BasicBlocks differ in their forward) get distinct types.
Module new_module(const std::string& class_name, const CompilationUnitPtr& unit) {
  Module module(c10::QualifiedName("__torch__.dptrain." + class_name), unit, /*shouldMangle=*/true);
  if (!module.type()->hasAttribute("training")) {
    module.register_attribute("training", c10::BoolType::get(), true);
  }
  return module;
}

// PyTorch's default initialisation of Linear and Conv2d: kaiming_uniform(a=sqrt(5)) for the
// weight, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias.
torch::Tensor uniform_fan_in(torch::IntArrayRef shape, int64_t fan_in) {
  double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty(shape).uniform_(-bound, bound);
}

void add_linear(Module& module, const std::string& prefix, int64_t in, int64_t out) {
  module.register_parameter(prefix + "_weight", uniform_fan_in({out, in}, in).requires_grad_(), false);
  module.register_parameter(prefix + "_bias", uniform_fan_in({out}, in).requires_grad_(), false);
}

void add_conv(Module& module, const std::string& prefix, int64_t in, int64_t out, int64_t kernel, bool bias) {
  int64_t fan_in = in * kernel * kernel;
  module.register_parameter(prefix + "_weight", uniform_fan_in({out, in, kernel, kernel}, fan_in).requires_grad_(),
                            false);
  if (bias) module.register_parameter(prefix + "_bias", uniform_fan_in({out}, fan_in).requires_grad_(), false);
}

// ResNet convolutions: kaiming_normal(fan_out, relu), as torchvision initialises them.
void add_resnet_conv(Module& module, const std::string& prefix, int64_t in, int64_t out, int64_t kernel) {
  double std = std::sqrt(2.0 / static_cast<double>(out * kernel * kernel));
  module.register_parameter(prefix + "_weight", (torch::randn({out, in, kernel, kernel}) * std).requires_grad_(),
                            false);
}

void add_batch_norm(Module& module, const std::string& prefix, int64_t channels) {
  module.register_parameter(prefix + "_weight", torch::ones({channels}).requires_grad_(), false);
  module.register_parameter(prefix + "_bias", torch::zeros({channels}).requires_grad_(), false);
  module.register_buffer(prefix + "_running_mean", torch::zeros({channels}));
  module.register_buffer(prefix + "_running_var", torch::ones({channels}));
}

std::string batch_norm_call(const std::string& input, const std::string& prefix) {
  return "torch.batch_norm(" + input + ", self." + prefix + "_weight, self." + prefix + "_bias, self." + prefix +
         "_running_mean, self." + prefix + "_running_var, self.training, 0.1, 1e-05, False)";
}

Module make_cnn(const ModelZooOptions& options) {
  DPT_CHECK(options.height % 4 == 0 && options.width % 4 == 0, InvalidArgumentError,
            "the built-in cnn needs an input height and width divisible by 4, got ", options.height, "x",
            options.width);
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  Module net = new_module("CNN", unit);
  add_conv(net, "conv1", options.in_channels, 32, 3, /*bias=*/false);
  add_batch_norm(net, "bn1", 32);
  add_conv(net, "conv2", 32, 64, 3, /*bias=*/false);
  add_batch_norm(net, "bn2", 64);
  int64_t flat = 64 * (options.height / 4) * (options.width / 4);
  add_linear(net, "fc1", flat, 128);
  add_linear(net, "fc2", 128, options.num_classes);
  net.define(std::string("def forward(self, x):\n") +
             "    x = torch.conv2d(x, self.conv1_weight, None, [1, 1], [1, 1], [1, 1], 1)\n"
             "    x = torch.max_pool2d(torch.relu(" + batch_norm_call("x", "bn1") + "), [2, 2], [2, 2], [0, 0], [1, 1], False)\n"
             "    x = torch.conv2d(x, self.conv2_weight, None, [1, 1], [1, 1], [1, 1], 1)\n"
             "    x = torch.max_pool2d(torch.relu(" + batch_norm_call("x", "bn2") + "), [2, 2], [2, 2], [0, 0], [1, 1], False)\n"
             "    x = torch.relu(torch.linear(torch.flatten(x, 1), self.fc1_weight, self.fc1_bias))\n"
             "    x = torch.dropout(x, 0.25, self.training)\n"
             "    return torch.linear(x, self.fc2_weight, self.fc2_bias)\n");
  return net;
}

// BasicBlock: conv3x3-bn-relu-conv3x3-bn (+ 1x1 conv-bn shortcut when the shape changes), relu.
Module make_basic_block(const CompilationUnitPtr& unit, int64_t in, int64_t out, int64_t stride) {
  Module block = new_module("BasicBlock", unit);
  add_resnet_conv(block, "conv1", in, out, 3);
  add_batch_norm(block, "bn1", out);
  add_resnet_conv(block, "conv2", out, out, 3);
  add_batch_norm(block, "bn2", out);
  bool projection = stride != 1 || in != out;
  std::string s = std::to_string(stride);
  std::string source = "def forward(self, x):\n"
                       "    out = torch.conv2d(x, self.conv1_weight, None, [" + s + ", " + s + "], [1, 1], [1, 1], 1)\n"
                       "    out = torch.relu(" + batch_norm_call("out", "bn1") + ")\n"
                       "    out = torch.conv2d(out, self.conv2_weight, None, [1, 1], [1, 1], [1, 1], 1)\n"
                       "    out = " + batch_norm_call("out", "bn2") + "\n";
  if (projection) {
    add_resnet_conv(block, "shortcut", in, out, 1);
    add_batch_norm(block, "shortcut_bn", out);
    source += "    identity = torch.conv2d(x, self.shortcut_weight, None, [" + s + ", " + s +
              "], [0, 0], [1, 1], 1)\n"
              "    identity = " + batch_norm_call("identity", "shortcut_bn") + "\n";
  } else {
    source += "    identity = x\n";
  }
  source += "    return torch.relu(out + identity)\n";
  block.define(source);
  return block;
}

Module make_resnet18(const ModelZooOptions& options) {
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  Module net = new_module("ResNet18", unit);
  add_resnet_conv(net, "stem", options.in_channels, 64, 3);
  add_batch_norm(net, "stem_bn", 64);
  const int64_t widths[] = {64, 128, 256, 512};
  int64_t in = 64;
  std::string source = "def forward(self, x):\n"
                       "    x = torch.conv2d(x, self.stem_weight, None, [1, 1], [1, 1], [1, 1], 1)\n"
                       "    x = torch.relu(" + batch_norm_call("x", "stem_bn") + ")\n";
  for (int stage = 0; stage < 4; ++stage) {
    for (int index = 0; index < 2; ++index) {
      int64_t stride = (stage > 0 && index == 0) ? 2 : 1;
      std::string name = "layer" + std::to_string(stage + 1) + "_" + std::to_string(index);
      net.register_module(name, make_basic_block(unit, in, widths[stage], stride));
      source += "    x = self." + name + ".forward(x)\n";
      in = widths[stage];
    }
  }
  add_linear(net, "fc", 512, options.num_classes);
  source += "    x = torch.flatten(torch.adaptive_avg_pool2d(x, [1, 1]), 1)\n"
            "    return torch.linear(x, self.fc_weight, self.fc_bias)\n";
  net.define(source);
  return net;
}

}  // namespace

Module make_mlp(int64_t in_features, const std::vector<int64_t>& hidden, int64_t num_classes) {
  DPT_CHECK(in_features > 0 && num_classes > 0, InvalidArgumentError, "mlp: in_features (", in_features,
            ") and num_classes (", num_classes, ") must be positive");
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  Module net = new_module("MLP", unit);
  std::string source = "def forward(self, x):\n    x = torch.flatten(x, 1)\n";
  int64_t in = in_features;
  for (size_t i = 0; i < hidden.size(); ++i) {
    std::string name = "fc" + std::to_string(i + 1);
    add_linear(net, name, in, hidden[i]);
    source += "    x = torch.relu(torch.linear(x, self." + name + "_weight, self." + name + "_bias))\n";
    in = hidden[i];
  }
  add_linear(net, "out", in, num_classes);
  source += "    return torch.linear(x, self.out_weight, self.out_bias)\n";
  net.define(source);
  return net;
}

const std::vector<std::string>& builtin_model_names() {
  static const std::vector<std::string> names = {"mlp", "cnn", "resnet18", "gpt", "gpt2-small"};
  return names;
}

bool is_builtin_language_model(const std::string& name) { return name == "gpt" || name == "gpt2-small"; }

bool is_builtin_model(const std::string& name) {
  for (const auto& known : builtin_model_names()) {
    if (known == name) return true;
  }
  return false;
}

Module make_builtin_model(const std::string& name, const ModelZooOptions& options) {
  DPT_CHECK(options.in_channels > 0 && options.height > 0 && options.width > 0 && options.num_classes > 0,
            InvalidArgumentError, "built-in model '", name, "': input shape ", options.in_channels, "x",
            options.height, "x", options.width, " and ", options.num_classes, " classes must all be positive");
  if (name == "mlp") return make_mlp(options.in_channels * options.height * options.width, {1024, 1024}, options.num_classes);
  if (name == "cnn") return make_cnn(options);
  if (name == "resnet18") return make_resnet18(options);
  if (is_builtin_language_model(name)) {
    GptOptions gpt;
    gpt.vocab_size = options.num_classes;
    gpt.positions = options.context;
    gpt.layers = options.gpt_layers, gpt.dim = options.gpt_dim, gpt.heads = options.gpt_heads;
    if (name == "gpt2-small") {
      DPT_CHECK(options.context <= 1024, InvalidArgumentError, "--context ", options.context,
                " is longer than gpt2-small's 1024 positions");
      gpt.positions = 1024, gpt.layers = 12, gpt.dim = 768, gpt.heads = 12;
    }
    return make_gpt(gpt);
  }
  DPT_THROW(InvalidArgumentError, "unknown built-in model '", name,
            "' (built-ins: mlp, cnn, resnet18, gpt, gpt2-small; anything else must be a TorchScript file)");
}

}  // namespace dpt
