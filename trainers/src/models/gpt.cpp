#include "models/gpt.h"

#include <torch/torch.h>

#include <cmath>
#include <memory>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

using torch::jit::Module;

Module gpt_module(const std::string& class_name, const std::shared_ptr<torch::jit::CompilationUnit>& unit) {
  Module module(c10::QualifiedName("__torch__.dptrain." + class_name), unit, /*shouldMangle=*/true);
  module.register_attribute("training", c10::BoolType::get(), true);
  return module;
}

torch::Tensor normal(torch::IntArrayRef shape, double std) { return (torch::randn(shape) * std).requires_grad_(); }

void add_linear(Module& m, const std::string& name, int64_t in, int64_t out, double std) {
  m.register_parameter(name + "_weight", normal({out, in}, std), false);
  m.register_parameter(name + "_bias", torch::zeros({out}).requires_grad_(), false);
}

void add_layer_norm(Module& m, const std::string& name, int64_t dim) {
  m.register_parameter(name + "_weight", torch::ones({dim}).requires_grad_(), false);
  m.register_parameter(name + "_bias", torch::zeros({dim}).requires_grad_(), false);
}

std::string layer_norm(const std::string& x, const std::string& name, int64_t dim) {
  return "torch.layer_norm(" + x + ", [" + std::to_string(dim) + "], self." + name + "_weight, self." + name +
         "_bias, 1e-05, False)";
}

Module make_block(const std::shared_ptr<torch::jit::CompilationUnit>& unit, const GptOptions& o) {
  Module block = gpt_module("Block", unit);
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(o.layers));
  add_layer_norm(block, "ln_1", o.dim);
  add_linear(block, "attn_qkv", o.dim, 3 * o.dim, 0.02);
  add_linear(block, "attn_proj", o.dim, o.dim, residual_std);
  add_layer_norm(block, "ln_2", o.dim);
  add_linear(block, "mlp_fc", o.dim, 4 * o.dim, 0.02);
  add_linear(block, "mlp_proj", 4 * o.dim, o.dim, residual_std);
  const std::string d = std::to_string(o.dim), h = std::to_string(o.heads), hd = std::to_string(o.dim / o.heads);
  block.define("def forward(self, x):\n"
               "    B = x.size(0)\n"
               "    T = x.size(1)\n"
               "    qkv = torch.linear(" + layer_norm("x", "ln_1", o.dim) + ", self.attn_qkv_weight, self.attn_qkv_bias)\n"
               "    q, k, v = qkv.split(" + d + ", 2)\n"
               "    q = q.view(B, T, " + h + ", " + hd + ").transpose(1, 2)\n"
               "    k = k.view(B, T, " + h + ", " + hd + ").transpose(1, 2)\n"
               "    v = v.view(B, T, " + h + ", " + hd + ").transpose(1, 2)\n"
               "    y = torch.scaled_dot_product_attention(q, k, v, None, 0.0, True)\n"
               "    y = y.transpose(1, 2).contiguous().view(B, T, " + d + ")\n"
               "    x = x + torch.linear(y, self.attn_proj_weight, self.attn_proj_bias)\n"
               "    m = torch.gelu(torch.linear(" + layer_norm("x", "ln_2", o.dim) + ", self.mlp_fc_weight, self.mlp_fc_bias))\n"
               "    return x + torch.linear(m, self.mlp_proj_weight, self.mlp_proj_bias)\n");
  return block;
}

}  // namespace

Module make_gpt(const GptOptions& o) {
  DPT_CHECK(o.vocab_size > 0 && o.positions > 0 && o.layers > 0 && o.dim > 0 && o.heads > 0, InvalidArgumentError,
            "gpt: vocab_size ", o.vocab_size, ", positions ", o.positions, ", --gpt-layers ", o.layers, ", --gpt-dim ",
            o.dim, ", --gpt-heads ", o.heads, " must all be positive");
  DPT_CHECK(o.dim % o.heads == 0, InvalidArgumentError, "gpt: --gpt-dim ", o.dim, " is not a multiple of --gpt-heads ",
            o.heads);
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  Module net = gpt_module("GPT", unit);
  // Read by `dptrain generate`: how many tokens the model can look at.
  net.register_attribute("dptrain_context", c10::IntType::get(), o.positions);
  net.register_parameter("wte_weight", normal({o.vocab_size, o.dim}, 0.02), false);
  net.register_parameter("wpe_weight", normal({o.positions, o.dim}, 0.02), false);
  std::string source =
      "def forward(self, idx):\n"
      "    T = idx.size(1)\n"
      "    torch._assert(T <= " + std::to_string(o.positions) + ", 'the context is longer than the " +
      std::to_string(o.positions) + " positions of this GPT')\n"
      "    pos = torch.arange(0, T, dtype=4, device=idx.device)\n"
      "    x = torch.embedding(self.wte_weight, idx) + torch.embedding(self.wpe_weight, pos)\n";
  for (int64_t i = 0; i < o.layers; ++i) {
    const std::string name = "h_" + std::to_string(i);
    net.register_module(name, make_block(unit, o));
    source += "    x = self." + name + ".forward(x)\n";
  }
  add_layer_norm(net, "ln_f", o.dim);
  // The head shares the token embedding (weight tying, as GPT-2): one parameter, no bias.
  source += "    return torch.linear(" + layer_norm("x", "ln_f", o.dim) + ", self.wte_weight)\n";
  net.define(source);
  return net;
}

int64_t gpt_parameters(const GptOptions& o) {
  const int64_t per_block = 2 * 2 * o.dim + (o.dim * 3 * o.dim + 3 * o.dim) + (o.dim * o.dim + o.dim) +
                            (o.dim * 4 * o.dim + 4 * o.dim) + (4 * o.dim * o.dim + o.dim);
  return o.vocab_size * o.dim + o.layers * per_block + 2 * o.dim;
}

}  // namespace dpt
