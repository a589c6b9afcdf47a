#include "loop/task.h"

#include <algorithm>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

// The scalar tensor a step returned, or a ModelError naming the method.
torch::Tensor scalar_of(const c10::IValue& value, const char* method) {
  DPT_CHECK(value.isTensor() && value.toTensor().numel() == 1, ModelError, "the model's ", method,
            " must return the loss as a one-element tensor, got ",
            value.isTensor() ? c10::str("a tensor of shape ", value.toTensor().sizes()) : value.tagKind());
  return value.toTensor().reshape({});
}

// C++ step functions take one input and one target tensor.
const torch::Tensor& single(const Tensors& tensors, const char* what) {
  return tensors.tensor(std::string("the ") + what + " (C++ step functions take one " + what + " tensor)");
}

}  // namespace

bool Task::is_sequence(const torch::Tensor& outputs, const torch::Tensor& targets) {
  return outputs.dim() == 3 && targets.dim() == 2 && !c10::isFloatingType(targets.scalar_type());
}

torch::Tensor Task::outputs(Model& model, const Tensors& inputs) {
  if (!inputs.is_tuple()) return model.forward(inputs.parts().front());
  c10::IValue output = model.forward(inputs.arguments());
  DPT_CHECK(output.isTensor(), ModelError, "the model's forward returned a ", output.tagKind(), " for inputs ",
            inputs.shapes(), "; expected one output tensor");
  return output.toTensor();
}

const std::vector<std::string>& Task::loss_names() {
  static const std::vector<std::string> names = {"cross_entropy", "nll", "mse", "l1", "smooth_l1", "bce_with_logits"};
  return names;
}

Task Task::of(const Model& model, const TrainerOptions& options) {
  Task task(options.loss(), options.training_step() || model.has_method("training_step"),
            options.validation_step() || model.has_method("validation_step"));
  task.training_fn_ = options.training_step();
  task.validation_fn_ = options.validation_step();
  task.label_smoothing_ = options.label_smoothing();
  task.top_k_ = options.top_k();
  task.ignore_index_ = options.ignore_index();
  return task;
}

torch::Tensor Task::loss_of(const torch::Tensor& outputs_in, const Tensors& target_parts, bool sum) const {
  namespace F = torch::nn::functional;
  const torch::Tensor& targets = target_parts.tensor(
      "--loss " + loss_ + "'s targets (a tuple of targets needs the model's own training_step and validation_step)");
  auto outputs = outputs_in.to(torch::kFloat);  // the loss in float32 (autocast-safe)
  const auto reduction = [sum](auto options) { return sum ? options.reduction(torch::kSum) : options; };
  if (is_class_loss(loss_) && is_sequence(outputs, targets)) {
    // A language model: scores [B, T, V] (the class dimension last, as LM code writes it) for
    // targets [B, T]. Training takes the mean over the tokens; evaluation sums each window's mean
    // token loss, so that averaged over windows it is the mean loss per token.
    const int64_t tokens = targets.size(1);
    auto flat = loss_of(outputs.reshape({-1, outputs.size(2)}), Tensors(targets.reshape({-1})), sum);
    return sum ? flat / static_cast<double>(tokens) : flat;
  }
  if (loss_ == "cross_entropy") {
    return F::cross_entropy(outputs, targets, reduction(F::CrossEntropyFuncOptions()
                                                            .label_smoothing(label_smoothing_)
                                                            .ignore_index(ignore_index_)));
  }
  if (loss_ == "nll") return F::nll_loss(outputs, targets, reduction(F::NLLLossFuncOptions().ignore_index(ignore_index_)));
  auto expected = targets.to(torch::kFloat);
  if (loss_ == "mse") return F::mse_loss(outputs, expected, reduction(F::MSELossFuncOptions()));
  if (loss_ == "l1") return F::l1_loss(outputs, expected, reduction(F::L1LossFuncOptions()));
  if (loss_ == "smooth_l1") return F::smooth_l1_loss(outputs, expected, reduction(F::SmoothL1LossFuncOptions()));
  return F::binary_cross_entropy_with_logits(outputs, expected,
                                             reduction(F::BinaryCrossEntropyWithLogitsFuncOptions()));
}

torch::Tensor Task::training_loss(GradientSync& sync, const Tensors& inputs, const Tensors& targets) const {
  if (training_fn_) {
    return scalar_of(training_fn_([&sync](const torch::Tensor& x) { return sync.forward(x); },
                                  single(inputs, "input"), single(targets, "target")),
                     "training_step");
  }
  if (training_step_) {
    return scalar_of(sync.call("training_step", {inputs.ivalue(), targets.ivalue()}), "training_step");
  }
  return loss_of(sync.forward(inputs), targets, /*sum=*/false);
}

void Task::check(Model& model, const Tensors& input_parts, const Tensors& target_parts,
                 std::optional<int64_t> max_label) const {
  if (training_fn_) {
    scalar_of(training_fn_([&model](const torch::Tensor& x) { return model.forward(x); },
                           single(input_parts, "input"), single(target_parts, "target")),
              "training_step");
    return;
  }
  if (training_step_) {
    scalar_of(model.run_method("training_step", {input_parts.ivalue(), target_parts.ivalue()}), "training_step");
    return;
  }
  auto outputs = Task::outputs(model, input_parts);
  const torch::Tensor& targets = target_parts.tensor(
      "--loss " + loss_ + "'s targets (a tuple of targets needs the model's own training_step and validation_step)");
  const std::string inputs = input_parts.shapes();
  if (is_class_loss(loss_) && is_sequence(outputs, targets)) {
    const int64_t largest = max_label.value_or(targets.numel() > 0 ? targets.max().item<int64_t>() : 0);
    DPT_CHECK(outputs.size(0) == targets.size(0) && outputs.size(1) == targets.size(1) && outputs.size(2) > largest,
              ModelError, "model output of shape ", outputs.sizes(), " for inputs of shape ", inputs,
              " does not fit the targets ", targets.sizes(), ": ", loss_, " on sequences needs [B, T, V] scores for ",
              "[B, T] targets with V > ", largest, " (the largest token id)");
    return;
  }
  if (is_class_loss(loss_)) {
    const int64_t largest = max_label.value_or(targets.numel() > 0 ? targets.max().item<int64_t>() : 0);
    DPT_CHECK(!c10::isFloatingType(targets.scalar_type()) && targets.dim() == 1, ModelError, "--loss ", loss_,
              " needs integer class targets [N] (or [B, T] for scores [B, T, V]), got ", c10::toString(targets.scalar_type()), " targets of shape ",
              targets.sizes(), " (for other targets choose mse, l1, smooth_l1 or bce_with_logits)");
    DPT_CHECK(outputs.dim() == 2 && outputs.size(0) == input_parts.samples() && outputs.size(1) > largest, ModelError,
              "model output of shape ", outputs.sizes(), " for inputs of shape ", inputs,
              " is incompatible with the labels: ", loss_, " needs [N, C] class scores with C > ", largest,
              " (the largest label)");
    return;
  }
  DPT_CHECK(outputs.sizes() == targets.sizes(), ModelError, "--loss ", loss_, " compares model outputs with targets "
            "of the same shape; the model gives ", outputs.sizes(), " for inputs of shape ", inputs,
            " and the targets are ", targets.sizes());
}

Task::EvaluationSums Task::evaluation_sums(Model& model, const Tensors& inputs, const Tensors& targets) const {
  const double n = static_cast<double>(inputs.samples());
  EvaluationSums result_sums;
  auto& sums = result_sums.sums;
  if (validation_fn_) {
    auto result = validation_fn_([&model](const torch::Tensor& x) { return model.forward(x); },
                                 single(inputs, "input"), single(targets, "target"));
    for (const auto& [name, value] : result) {
      DPT_CHECK(value.numel() == 1, ModelError, "validation_step's metric ", name, " is not a one-element tensor");
      sums.emplace_back(name, value.reshape({}).to(torch::kDouble) * n);
    }
    return result_sums;  // a std::map: already sorted by name
  }
  if (validation_step_) {
    auto result = model.run_method("validation_step", {inputs.ivalue(), targets.ivalue()});
    DPT_CHECK(result.isGenericDict(), ModelError, "the model's validation_step must return a Dict[str, Tensor], got ",
              result.tagKind());
    for (const auto& entry : result.toGenericDict()) {
      DPT_CHECK(entry.key().isString() && entry.value().isTensor() && entry.value().toTensor().numel() == 1,
                ModelError, "validation_step's result must map names to one-element tensors");
      sums.emplace_back(entry.key().toStringRef(), entry.value().toTensor().reshape({}).to(torch::kDouble) * n);
    }
    std::sort(sums.begin(), sums.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return result_sums;
  }
  auto outputs = Task::outputs(model, inputs);
  sums.emplace_back("loss", loss_of(outputs, targets, /*sum=*/true).to(torch::kDouble));
  if (is_class_loss(loss_)) {
    torch::Tensor labels = targets.parts().front();
    // Sequences: each token is a prediction; the sums are per window (a window's token fraction).
    const bool sequence = is_sequence(outputs, labels);
    const double per_sample = sequence ? static_cast<double>(labels.size(1)) : 1.0;
    if (sequence) {
      outputs = outputs.reshape({-1, outputs.size(2)});
      labels = labels.reshape({-1});
      result_sums.sequences = true;
    }
    sums.emplace_back("correct", outputs.argmax(1).eq(labels).sum().to(torch::kDouble) / per_sample);
    if (top_k_ > 1) {
      const int64_t k = std::min(top_k_, outputs.size(1));
      const auto top = std::get<1>(outputs.topk(k, /*dim=*/1));
      sums.emplace_back("correct_top_k", top.eq(labels.unsqueeze(1)).any(1).sum().to(torch::kDouble) / per_sample);
    }
  }
  return result_sums;
}

bool is_known_loss(const std::string& name) {
  const auto& names = Task::loss_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace dpt
