// torch.autocast(device_type, dtype) for one C++ scope (private to the Trainer): fp16 on CUDA for
// mixed_precision (training only; its loss scaling lives in loss_scaler.h), bf16 on the training
// device for precision "bf16" (training and evaluation); nothing for fp32. The previous autocast
// dtype is restored on leaving, and the cast cache cleared when the outermost scope ends.
#pragma once

#include <ATen/autocast_mode.h>

#include "dptrain/trainers/loop/trainer.h"

namespace dpt {

class AutocastScope {
 public:
  explicit AutocastScope(const TrainerOptions& o, bool evaluation = false) {
    if (o.mixed_precision() && !evaluation) {
      device_ = at::kCUDA, dtype_ = at::kHalf;
    } else if (o.precision() == "bf16") {
      device_ = o.device().type(), dtype_ = at::kBFloat16;
    } else {
      return;
    }
    active_ = true;
    previous_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_dtype(device_, dtype_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, false);
    at::autocast::set_autocast_dtype(device_, previous_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_ = c10::DeviceType::CPU;
  at::ScalarType dtype_ = at::kFloat, previous_dtype_ = at::kFloat;
};

}  // namespace dpt
