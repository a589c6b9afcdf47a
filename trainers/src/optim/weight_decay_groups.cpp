#include "dptrain/trainers/optim/weight_decay_groups.h"

#include <fnmatch.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

std::string last_component(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The attribute of `self` a graph value was read from ("weight" for self.weight), or "".
std::string self_attribute(const Value* value, const Graph& graph) {
  const Node* node = value->node();
  if (node->kind() != c10::prim::GetAttr || node->input(0) != graph.inputs().at(0)) return "";
  return node->s(c10::attr::name);
}

// Parameters this method passes as the weight of torch.embedding (aten::embedding) or of a call to
// F.embedding (prim::CallFunction, its function constant named "embedding"), nested blocks included.
void embedding_weights_in(const torch::jit::Block& block, const Graph& graph, const std::string& prefix,
                          std::set<std::string>& out) {
  for (const Node* node : block.nodes()) {
    if (node->kind() == c10::aten::embedding) {
      const std::string attribute = self_attribute(node->input(0), graph);
      if (!attribute.empty()) out.insert(prefix + attribute);
    } else if (node->kind() == c10::prim::CallFunction && node->inputs().size() > 2) {
      const Node* function = node->input(0)->node();
      if (function->kind() == c10::prim::Constant && function->hasAttribute(c10::attr::name) &&
          function->kindOf(c10::attr::name) == torch::jit::AttributeKind::s &&
          function->s(c10::attr::name) == "embedding") {
        const std::string attribute = self_attribute(node->input(2), graph);
        if (!attribute.empty()) out.insert(prefix + attribute);
      }
    }
    for (const torch::jit::Block* inner : node->blocks()) embedding_weights_in(*inner, graph, prefix, out);
  }
}

std::set<std::string> embedding_tables(Model model) {
  std::set<std::string> out;
  if (model.is_torchscript()) {
    for (const auto& named : model.torchscript().named_modules()) {
      const std::string prefix = named.name.empty() ? "" : named.name + ".";
      const auto type_name = named.value.type()->name();
      if (type_name && (type_name->name() == "Embedding" || type_name->name() == "EmbeddingBag")) {
        for (const auto& param : named.value.named_parameters(/*recurse=*/false)) out.insert(prefix + param.name);
      }
      for (const auto& method : named.value.get_methods()) {
        const auto graph = method.graph();
        embedding_weights_in(*graph->block(), *graph, prefix, out);
      }
    }
  } else if (!model.is_exported()) {
    for (const auto& named : model.module().named_modules()) {
      const std::string& type = named.value()->name();
      if (type != "torch::nn::EmbeddingImpl" && type != "torch::nn::EmbeddingBagImpl") continue;
      const std::string prefix = named.key().empty() ? "" : named.key() + ".";
      for (const auto& param : named.value()->named_parameters(/*recurse=*/false)) out.insert(prefix + param.key());
    }
  } else {
    // A compiled package has names only (weight_decay_groups.h).
    for (const auto& [name, param] : model.named_parameters()) {
      const auto dot = name.rfind('.');
      std::string owner = dot == std::string::npos ? name : name.substr(0, dot);
      owner = last_component(owner);
      std::transform(owner.begin(), owner.end(), owner.begin(), [](unsigned char c) { return std::tolower(c); });
      if (owner.find("emb") != std::string::npos || owner == "wte" || owner == "wpe") out.insert(name);
    }
  }
  return out;
}

bool is_bias(const std::string& name) { return ends_with(last_component(name), "bias"); }

}  // namespace

std::vector<bool> weight_decay_mask(const Model& model, const std::vector<std::string>& exclude) {
  if (exclude.empty()) return {};
  const NamedTensorList params = model.named_parameters();
  std::vector<bool> decays(params.size(), true);
  std::optional<std::set<std::string>> embeddings;  // read from the model once, if asked for
  for (const std::string& word : exclude) {
    if (word == "embedding" && !embeddings) embeddings = embedding_tables(model);
    bool selected = false;
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& [name, tensor] = params[i];
      bool match = false;
      if (word == "bias") {
        match = is_bias(name);
      } else if (word == "norm") {
        match = tensor.dim() == 1 && !is_bias(name);
      } else if (word == "embedding") {
        match = embeddings->count(name) > 0;
      } else {
        match = fnmatch(word.c_str(), name.c_str(), 0) == 0;
      }
      if (match) decays[i] = false;
      selected = selected || match;
    }
    DPT_CHECK(selected, InvalidArgumentError, "--weight-decay-exclude ", word,
              ": selects no parameter of this model (bias, norm, embedding, or a glob pattern of parameter "
              "names such as '", params.empty() ? std::string("*.weight") : params.front().first, "')");
  }
  return decays;
}

std::string describe_excluded(const Model& model, const std::vector<bool>& decays) {
  const NamedTensorList params = model.named_parameters();
  int64_t tensors = 0, elements = 0;
  std::string names;
  for (size_t i = 0; i < params.size() && i < decays.size(); ++i) {
    if (decays[i]) continue;
    ++tensors;
    elements += params[i].second.numel();
    if (tensors <= 6) names += (names.empty() ? "" : ", ") + params[i].first;
  }
  if (tensors > 6) names += ", ...";
  return detail::concat(tensors, " tensor(s), ", elements, " element(s)", names.empty() ? "" : ": ", names);
}

}  // namespace dpt
