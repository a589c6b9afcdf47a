#include "dptrain/parallel/ddp/autograd_hooks.h"

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "dptrain/core/error.h"

namespace dpt {
namespace {

class CallbackPostHook final : public torch::autograd::FunctionPostHook {
 public:
  explicit CallbackPostHook(std::function<void()> on_ready) : on_ready_(std::move(on_ready)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    on_ready_();
    return outputs;
  }

 private:
  std::function<void()> on_ready_;
};

}  // namespace

GradReadyHook::GradReadyHook(const torch::Tensor& param, std::function<void()> on_ready) {
  DPT_CHECK(param.defined() && param.requires_grad() && param.is_leaf(), InvalidArgumentError,
            "GradReadyHook needs a leaf tensor that requires grad");
  accumulator_ = torch::autograd::impl::grad_accumulator(param);
  DPT_ASSERT(accumulator_ != nullptr, "no grad accumulator for a leaf tensor");
  key_ = accumulator_->add_post_hook(std::make_unique<CallbackPostHook>(std::move(on_ready)));
}

GradReadyHook::~GradReadyHook() {
  if (accumulator_) accumulator_->del_post_hook(key_);
}

void queue_end_of_backward_callback(std::function<void()> callback) {
  torch::autograd::Engine::get_default_engine().queue_callback(std::move(callback));
}

}  // namespace dpt
