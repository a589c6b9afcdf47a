// What the Trainer optimises and reports for a model (private), in one place:
//  - a TorchScript model's own `training_step(inputs, targets) -> Tensor` (the loss to minimise)
//    and `validation_step(inputs, targets) -> Dict[str, Tensor]` (metrics averaged over the
//    evaluation split) when it defines them;
//  - otherwise `forward(inputs)` and the named loss: cross_entropy or nll on class scores [N, C]
//    with integer class targets, or on a language model's scores [B, T, V] with token targets
//    [B, T] (evaluation reports the loss and the accuracy; per token for sequences), or mse, l1,
//    smooth_l1, bce_with_logits on outputs shaped like the (float) targets (the loss only).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dptrain/core/model.h"
#include "dptrain/trainers/loop/trainer.h"
#include "loop/gradient_sync.h"

namespace dpt {

class Task {
 public:
  Task(std::string loss, bool training_step, bool validation_step)
      : loss_(std::move(loss)), training_step_(training_step), validation_step_(validation_step) {}
  // The options' step functions when set, else the steps `model` defines, else forward + loss.
  static Task of(const Model& model, const TrainerOptions& options);

  static const std::vector<std::string>& loss_names();
  static bool is_class_loss(const std::string& loss) { return loss == "cross_entropy" || loss == "nll"; }
  // Scores [B, T, V] for integer targets [B, T]: a language model's next-token predictions.
  static bool is_sequence(const torch::Tensor& outputs, const torch::Tensor& targets);

  bool uses_training_step() const { return training_step_; }
  // Targets are class labels: a class loss (cross_entropy, nll) computed by dptrain.
  bool uses_class_labels() const { return !training_step_ && is_class_loss(loss_); }
  bool uses_validation_step() const { return validation_step_; }
  // Inputs and targets may be tuples (data of several tensors): a tuple of inputs is forward's
  // arguments; a TorchScript training_step/validation_step gets each as a Tensor or a Tuple; the
  // named losses and C++ step functions take one target (one input) tensor, a DataError otherwise.

  // The mean loss of one micro-batch, through `sync` (DDP when distributed).
  torch::Tensor training_loss(GradientSync& sync, const Tensors& inputs, const Tensors& targets) const;
  // ModelError naming the shapes when the model's outputs cannot go with the targets (or
  // training_step does not return a scalar). `max_label`: the largest class label when known.
  void check(Model& model, const Tensors& inputs, const Tensors& targets, std::optional<int64_t> max_label) const;
  // One evaluation batch as named sums over its samples (averaged later by the sample count):
  // "loss" and "correct" (class losses; with top_k > 1 also "correct_top_k"), or validation_step's
  // metrics times the batch size.
  struct EvaluationSums {
    std::vector<std::pair<std::string, torch::Tensor>> sums;
    bool sequences = false;  // scores [B, T, V]: the loss is per token, so it has a perplexity
  };
  EvaluationSums evaluation_sums(Model& model, const Tensors& inputs, const Tensors& targets) const;
  // The model's outputs for a batch (inference).
  static torch::Tensor outputs(Model& model, const Tensors& inputs);

 private:
  torch::Tensor loss_of(const torch::Tensor& outputs, const Tensors& targets, bool sum) const;

  std::string loss_;
  bool training_step_;    // the model's method or training_fn_
  bool validation_step_;  // the model's method or validation_fn_
  TrainingStepFn training_fn_;
  ValidationStepFn validation_fn_;
  double label_smoothing_ = 0.0;  // cross_entropy's
  int64_t top_k_ = 0;             // > 1: evaluation counts "correct_top_k" too
  int64_t ignore_index_ = -100;   // cross_entropy's and nll's (targets never counted in the loss)
};

}  // namespace dpt
