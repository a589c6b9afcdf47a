#include <torch/script.h>

#include "dptrain/core/data/transforms.h"
#include "dptrain/core/error.h"
#include "dptrain/core/model.h"

namespace dpt {

Transform script_transform(const std::string& path) {
  auto model = Model::load_torchscript(path);  // ModelError naming the file when it is not one
  auto module = std::make_shared<torch::jit::Module>(model.torchscript());
  module->eval();
  const auto& schema = module->get_method("forward").function().getSchema();
  const size_t arguments = schema.arguments().size() - 1;  // without self
  DPT_CHECK(arguments == 1 || arguments == 2, ModelError, "--transform ", path, ": forward takes ", arguments,
            " argument(s); expected forward(self, x: Tensor) or forward(self, x: Tensor, seed: int)");
  const bool seeded = arguments == 2;
  return [module, seeded, path](Example example, SampleRng& rng) {
    torch::NoGradGuard no_grad;
    std::vector<c10::IValue> inputs{example.input};
    // Non-negative and within TorchScript's int (int64).
    if (seeded) inputs.emplace_back(static_cast<int64_t>(rng.next_u64() >> 1));
    auto output = module->forward(std::move(inputs));
    DPT_CHECK(output.isTensor(), DataError, "--transform ", path, ": forward returned a ", output.tagKind(),
              ", expected the transformed input tensor");
    example.input = output.toTensor();
    return example;
  };
}

}  // namespace dpt
