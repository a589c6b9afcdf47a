// Dynamic loss scaling for fp16 autocast (torch.cuda.amp.GradScaler's rule, private to the
// Trainer): multiply the loss by `scale`; unscale the gradients before clipping/stepping; on
// Inf/NaN gradients skip the step and halve the scale; after `growth_interval` clean steps double
// it. Deciding whether to step reads one flag from the device per step, as GradScaler.step does.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace dpt {

struct LossScaler {
  bool enabled = false;
  double scale = 65536.0;
  int64_t clean_steps = 0;
  int64_t growth_interval = 2000;

  // Unscales in place; returns true when every gradient is finite. The gradients are already
  // averaged over ranks, so every rank takes the same decision without a collective.
  bool unscale(const std::vector<torch::Tensor>& parameters) const {
    if (!enabled) return true;
    std::vector<torch::Tensor> grads;
    for (const auto& p : parameters) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    if (grads.empty()) return true;
    auto found_inf = torch::zeros({1}, grads.front().options().dtype(torch::kFloat));
    auto inverse = torch::full({1}, 1.0 / scale, found_inf.options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inverse);
    return found_inf.item<float>() == 0.0f;
  }

  void update(bool finite) {
    if (!enabled) return;
    if (!finite) {
      scale *= 0.5;
      clean_steps = 0;
    } else if (++clean_steps >= growth_interval) {
      scale *= 2.0;
      clean_steps = 0;
    }
  }
};

}  // namespace dpt
