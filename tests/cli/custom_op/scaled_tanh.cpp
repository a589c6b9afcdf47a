// A custom operator with its own backward, as a team would write one: dpt_test::scaled_tanh(x, s)
// = s * tanh(x), gradient s * (1 - tanh(x)^2). Built by tests/cli/test_tasks.py into a shared
// library that PyTorch loads with torch.ops.load_library and dptrain with --load-ops.
#include <torch/library.h>
#include <torch/torch.h>

namespace {

torch::Tensor scaled_tanh_kernel(const torch::Tensor& x, double s) { return torch::tanh(x) * s; }

class ScaledTanh : public torch::autograd::Function<ScaledTanh> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double s) {
    auto y = torch::tanh(x);
    ctx->save_for_backward({y});
    ctx->saved_data["s"] = s;
    return y * s;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto y = ctx->get_saved_variables()[0];
    const double s = ctx->saved_data["s"].toDouble();
    return {grads[0] * s * (1 - y * y), torch::Tensor()};
  }
};

torch::Tensor scaled_tanh_autograd(const torch::Tensor& x, double s) { return ScaledTanh::apply(x, s); }

}  // namespace

TORCH_LIBRARY(dpt_test, m) { m.def("scaled_tanh(Tensor x, float s) -> Tensor"); }
TORCH_LIBRARY_IMPL(dpt_test, CPU, m) { m.impl("scaled_tanh", scaled_tanh_kernel); }
TORCH_LIBRARY_IMPL(dpt_test, Autograd, m) { m.impl("scaled_tanh", scaled_tanh_autograd); }
