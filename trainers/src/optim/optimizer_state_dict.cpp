#include "dptrain/trainers/optim/optimizer_state_dict.h"

#include <cmath>
#include <optional>

#include "dptrain/core/error.h"
#include "dptrain/core/logging.h"

namespace dpt {
namespace {

using c10::IValue;
using GenericDict = c10::impl::GenericDict;

GenericDict string_dict() { return GenericDict(c10::StringType::get(), c10::AnyType::get()); }

// One parameter's state tensors by PyTorch's names ("momentum_buffer", "step", "exp_avg", ...).
using ParamState = std::map<std::string, torch::Tensor>;

// --- writing -----------------------------------------------------------------------------------

GenericDict sgd_group(const torch::optim::SGDOptions& o) {
  GenericDict group = string_dict();
  group.insert("lr", o.lr());
  group.insert("momentum", o.momentum());
  group.insert("dampening", o.dampening());
  group.insert("weight_decay", o.weight_decay());
  group.insert("nesterov", o.nesterov());
  group.insert("maximize", false);
  group.insert("foreach", IValue());
  group.insert("differentiable", false);
  group.insert("fused", IValue());
  return group;
}

template <typename Options>
GenericDict adam_group(const Options& o, bool decoupled_weight_decay) {
  GenericDict group = string_dict();
  group.insert("lr", o.lr());
  group.insert("betas", c10::ivalue::Tuple::create({std::get<0>(o.betas()), std::get<1>(o.betas())}));
  group.insert("eps", o.eps());
  group.insert("weight_decay", o.weight_decay());
  group.insert("amsgrad", o.amsgrad());
  group.insert("maximize", false);
  group.insert("foreach", IValue());
  group.insert("capturable", false);
  group.insert("differentiable", false);
  group.insert("fused", IValue());
  group.insert("decoupled_weight_decay", decoupled_weight_decay);
  return group;
}

ParamState param_state_of(const torch::optim::OptimizerParamState& state) {
  ParamState out;
  auto put = [&out](const char* name, const torch::Tensor& t) {
    if (t.defined()) out[name] = t.detach().cpu();
  };
  if (auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(&state)) {
    put("momentum_buffer", sgd->momentum_buffer());
  } else if (auto* adam = dynamic_cast<const torch::optim::AdamParamState*>(&state)) {
    out["step"] = torch::tensor(static_cast<float>(adam->step()));
    put("exp_avg", adam->exp_avg()), put("exp_avg_sq", adam->exp_avg_sq()), put("max_exp_avg_sq", adam->max_exp_avg_sq());
  } else if (auto* adamw = dynamic_cast<const torch::optim::AdamWParamState*>(&state)) {
    out["step"] = torch::tensor(static_cast<float>(adamw->step()));
    put("exp_avg", adamw->exp_avg()), put("exp_avg_sq", adamw->exp_avg_sq());
    put("max_exp_avg_sq", adamw->max_exp_avg_sq());
  }
  return out;
}

// --- reading -----------------------------------------------------------------------------------

std::optional<IValue> lookup(const GenericDict& dict, const std::string& key) {
  auto found = dict.find(key);
  if (found == dict.end()) return std::nullopt;
  return found->value();
}

struct GroupReader {
  const GenericDict& group;
  const std::string& where;  // "checkpoint X: optimizer group 0"

  IValue get(const std::string& key) const {
    auto value = lookup(group, key);
    DPT_CHECK(value.has_value(), DataError, where, " has no '", key, "'");
    return *value;
  }
  double number(const std::string& key) const {
    IValue value = get(key);
    DPT_CHECK(value.isDouble() || value.isInt(), DataError, where, ": '", key, "' is not a number");
    return value.isDouble() ? value.toDouble() : static_cast<double>(value.toInt());
  }
  // A flag PyTorch may omit (its __setstate__ fills in the default).
  bool flag(const std::string& key, bool fallback = false) const {
    auto value = lookup(group, key);
    if (!value || value->isNone()) return fallback;
    DPT_CHECK(value->isBool(), DataError, where, ": '", key, "' is not a bool");
    return value->toBool();
  }
  std::pair<double, double> betas() const {
    IValue value = get("betas");
    std::vector<IValue> items;
    if (value.isTuple()) {
      for (const auto& item : value.toTupleRef().elements()) items.push_back(item);
    } else if (value.isList()) {
      for (const auto& item : value.toListRef()) items.push_back(item);
    }
    DPT_CHECK(items.size() == 2 && (items[0].isDouble() || items[0].isInt()) &&
                  (items[1].isDouble() || items[1].isInt()),
              DataError, where, ": 'betas' is not a pair of numbers");
    auto number_of = [](const IValue& v) { return v.isDouble() ? v.toDouble() : static_cast<double>(v.toInt()); };
    return {number_of(items[0]), number_of(items[1])};
  }
};

// Warns when the checkpoint's hyperparameter differs from this run's (the checkpoint's wins, as
// in PyTorch's load_state_dict).
void note_override(const std::string& origin, const std::string& name, double ours, double theirs) {
  if (std::abs(ours - theirs) > 1e-12 * std::max(1.0, std::abs(ours))) {
    DPT_LOG_WARN("{}: the optimizer's {} is {} there and {} in this run's options: continuing with {}", origin,
                 name, theirs, ours, theirs);
  }
}

void load_sgd_group(torch::optim::SGDOptions& o, const GroupReader& group, const std::string& origin) {
  DPT_CHECK(!lookup(group.group, "betas"), DataError, group.where,
            " belongs to an Adam optimizer (it has 'betas'), this run's optimizer is sgd: pass --optimizer adam or adamw");
  const double momentum = group.number("momentum"), weight_decay = group.number("weight_decay");
  note_override(origin, "momentum", o.momentum(), momentum);
  note_override(origin, "weight decay", o.weight_decay(), weight_decay);
  o.lr(group.number("lr")).momentum(momentum).weight_decay(weight_decay);
  o.dampening(group.number("dampening")).nesterov(group.flag("nesterov"));
}

template <typename Options>
void load_adam_group(Options& o, const GroupReader& group, bool decoupled, const std::string& origin) {
  DPT_CHECK(lookup(group.group, "betas").has_value(), DataError, group.where,
            " does not belong to an Adam optimizer (no 'betas'), this run's optimizer is ",
            decoupled ? "adamw" : "adam", ": pass --optimizer sgd");
  const bool saved_decoupled = group.flag("decoupled_weight_decay");
  DPT_CHECK(saved_decoupled == decoupled, DataError, group.where, " belongs to ",
            saved_decoupled ? "AdamW" : "Adam", ", this run's optimizer is ", decoupled ? "adamw" : "adam",
            ": pass --optimizer ", saved_decoupled ? "adamw" : "adam");
  const auto [beta1, beta2] = group.betas();
  note_override(origin, "beta1", std::get<0>(o.betas()), beta1);
  note_override(origin, "beta2", std::get<1>(o.betas()), beta2);
  note_override(origin, "weight decay", o.weight_decay(), group.number("weight_decay"));
  o.lr(group.number("lr")).betas({beta1, beta2}).eps(group.number("eps"));
  o.weight_decay(group.number("weight_decay")).amsgrad(group.flag("amsgrad"));
}

ParamState read_param_state(const IValue& value, const std::string& where) {
  DPT_CHECK(value.isGenericDict(), DataError, where, " is not a dict");
  ParamState state;
  for (const auto& entry : value.toGenericDict()) {
    DPT_CHECK(entry.key().isString(), DataError, where, " has a non-string key");
    if (entry.value().isNone()) continue;  // momentum_buffer None: no momentum yet
    const std::string& name = entry.key().toStringRef();
    if (name == "step" && (entry.value().isInt() || entry.value().isDouble())) {  // older PyTorch: a number
      state[name] = torch::tensor(entry.value().isInt() ? static_cast<double>(entry.value().toInt())
                                                        : entry.value().toDouble());
      continue;
    }
    DPT_CHECK(entry.value().isTensor(), DataError, where, ": '", name, "' is not a tensor");
    state[name] = entry.value().toTensor();
  }
  return state;
}

torch::Tensor take(ParamState& state, const std::string& name, const torch::Tensor& param,
                   const std::string& where, bool required = true) {
  auto found = state.find(name);
  if (found == state.end()) {
    DPT_CHECK(!required, DataError, where, " has no '", name, "'");
    return {};
  }
  torch::Tensor tensor = found->second;
  state.erase(found);
  DPT_CHECK(tensor.sizes() == param.sizes(), DataError, where, ": '", name, "' has shape ", tensor.sizes(),
            ", the parameter has shape ", param.sizes());
  return tensor.to(param.device(), param.scalar_type()).contiguous();
}

int64_t take_step(ParamState& state, const std::string& where) {
  auto found = state.find("step");
  DPT_CHECK(found != state.end() && found->second.numel() == 1, DataError, where, " has no 'step'");
  const double step = found->second.item<double>();
  state.erase(found);
  return static_cast<int64_t>(std::llround(step));
}

std::unique_ptr<torch::optim::OptimizerParamState> make_param_state(const std::string& kind, ParamState state,
                                                                    const torch::Tensor& param, bool amsgrad,
                                                                    const std::string& where) {
  std::unique_ptr<torch::optim::OptimizerParamState> out;
  if (kind == "sgd") {
    DPT_CHECK(!state.count("exp_avg"), DataError, where, " is Adam's state (exp_avg), this run's optimizer is sgd");
    auto buffer = take(state, "momentum_buffer", param, where, /*required=*/false);
    if (!buffer.defined()) return nullptr;  // no momentum (yet)
    auto sgd = std::make_unique<torch::optim::SGDParamState>();
    sgd->momentum_buffer(buffer);
    out = std::move(sgd);
  } else {
    DPT_CHECK(!state.count("momentum_buffer"), DataError, where, " is SGD's state (momentum_buffer), this run's "
              "optimizer is ", kind);
    const int64_t step = take_step(state, where);
    auto exp_avg = take(state, "exp_avg", param, where), exp_avg_sq = take(state, "exp_avg_sq", param, where);
    auto max_exp_avg_sq = take(state, "max_exp_avg_sq", param, where, amsgrad);
    if (kind == "adam") {
      auto adam = std::make_unique<torch::optim::AdamParamState>();
      adam->step(step), adam->exp_avg(exp_avg), adam->exp_avg_sq(exp_avg_sq), adam->max_exp_avg_sq(max_exp_avg_sq);
      out = std::move(adam);
    } else {
      auto adamw = std::make_unique<torch::optim::AdamWParamState>();
      adamw->step(step), adamw->exp_avg(exp_avg), adamw->exp_avg_sq(exp_avg_sq);
      adamw->max_exp_avg_sq(max_exp_avg_sq);
      out = std::move(adamw);
    }
  }
  DPT_CHECK(state.empty(), DataError, where, " holds '", state.begin()->first, "', which a ", kind,
            " optimizer does not keep");
  return out;
}

}  // namespace

std::string optimizer_kind(const torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<const torch::optim::SGD*>(&optimizer)) return "sgd";
  if (dynamic_cast<const torch::optim::AdamW*>(&optimizer)) return "adamw";
  if (dynamic_cast<const torch::optim::Adam*>(&optimizer)) return "adam";
  DPT_THROW(InvalidArgumentError, "only SGD, Adam and AdamW optimizers have a PyTorch state_dict layout here");
}

c10::IValue optimizer_state_dict(torch::optim::Optimizer& optimizer) {
  const std::string kind = optimizer_kind(optimizer);
  GenericDict state(c10::IntType::get(), c10::AnyType::get());
  c10::impl::GenericList groups(c10::AnyType::get());
  int64_t index = 0;
  for (auto& group : optimizer.param_groups()) {
    GenericDict entry = kind == "sgd" ? sgd_group(static_cast<torch::optim::SGDOptions&>(group.options()))
                        : kind == "adam"
                            ? adam_group(static_cast<torch::optim::AdamOptions&>(group.options()), false)
                            : adam_group(static_cast<torch::optim::AdamWOptions&>(group.options()), true);
    c10::impl::GenericList params(c10::AnyType::get());  // a plain list for Python (no typed-list tag)
    for (const auto& param : group.params()) {
      auto found = optimizer.state().find(param.unsafeGetTensorImpl());
      if (found != optimizer.state().end()) {
        GenericDict tensors = string_dict();
        for (auto& [name, tensor] : param_state_of(*found->second)) tensors.insert(name, tensor);
        state.insert(index, tensors);
      }
      params.push_back(index++);
    }
    entry.insert("params", params);
    groups.push_back(entry);
  }
  GenericDict out = string_dict();
  out.insert("state", state);
  out.insert("param_groups", groups);
  return out;
}

void load_optimizer_state_dict(torch::optim::Optimizer& optimizer, const c10::IValue& state_dict,
                               const std::string& origin) {
  const std::string kind = optimizer_kind(optimizer);
  const std::string what = origin + ": optimizer state";
  DPT_CHECK(state_dict.isGenericDict(), DataError, what, " is not a dict (torch.optim state_dict layout)");
  const auto dict = state_dict.toGenericDict();
  auto saved_state = lookup(dict, "state");
  auto saved_groups = lookup(dict, "param_groups");
  DPT_CHECK(saved_state && saved_state->isGenericDict() && saved_groups && saved_groups->isList(), DataError, what,
            " lacks 'state' (a dict) or 'param_groups' (a list)");
  auto& groups = optimizer.param_groups();
  const auto saved_group_list = saved_groups->toList();
  DPT_CHECK(saved_group_list.size() == groups.size(), DataError, what, " has ", saved_group_list.size(),
            " parameter group(s), this optimizer has ", groups.size());

  // Parameter index -> (group, parameter) of this optimizer, checked against the saved groups.
  std::map<int64_t, std::pair<size_t, torch::Tensor>> params_by_index;
  std::vector<bool> amsgrad(groups.size(), false);
  for (size_t g = 0; g < groups.size(); ++g) {
    const IValue saved = saved_group_list.get(g);
    const std::string where = what + " group " + std::to_string(g);
    DPT_CHECK(saved.isGenericDict(), DataError, where, " is not a dict");
    const auto saved_group = saved.toGenericDict();
    GroupReader reader{saved_group, where};
    IValue indices = reader.get("params");
    DPT_CHECK(indices.isList(), DataError, where, ": 'params' is not a list");
    const auto index_list = indices.toListRef();
    DPT_CHECK(index_list.size() == groups[g].params().size(), DataError, where, " has ", index_list.size(),
              " parameters, this model's has ", groups[g].params().size());
    DPT_CHECK(!reader.flag("maximize"), DataError, where, " maximizes (maximize=True), which dptrain's optimizers "
              "do not");
    for (size_t i = 0; i < index_list.size(); ++i) {
      DPT_CHECK(index_list[i].isInt(), DataError, where, ": 'params' holds a non-integer");
      params_by_index.emplace(index_list[i].toInt(), std::make_pair(g, groups[g].params()[i]));
    }
    auto& options = groups[g].options();
    amsgrad[g] = kind != "sgd" && reader.flag("amsgrad");
    if (kind == "sgd") load_sgd_group(static_cast<torch::optim::SGDOptions&>(options), reader, origin);
    if (kind == "adam") load_adam_group(static_cast<torch::optim::AdamOptions&>(options), reader, false, origin);
    if (kind == "adamw") load_adam_group(static_cast<torch::optim::AdamWOptions&>(options), reader, true, origin);
  }

  auto& states = optimizer.state();
  states.clear();
  for (const auto& entry : saved_state->toGenericDict()) {
    DPT_CHECK(entry.key().isInt(), DataError, what, ": 'state' has a non-integer key");
    const int64_t index = entry.key().toInt();
    auto found = params_by_index.find(index);
    DPT_CHECK(found != params_by_index.end(), DataError, what, " has state for parameter ", index,
              ", which no group lists");
    const auto& [group, param] = found->second;
    const std::string where = what + " of parameter " + std::to_string(index);
    auto state = make_param_state(kind, read_param_state(entry.value(), where), param, amsgrad[group], where);
    if (state) states[param.unsafeGetTensorImpl()] = std::move(state);
  }
}

}  // namespace dpt
