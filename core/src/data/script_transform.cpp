#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <atomic>
#include <unordered_map>

#include "dptrain/core/data/transforms.h"
#include "dptrain/core/error.h"
#include "dptrain/core/model.h"

namespace dpt {
namespace {

// A TorchScript transform as each worker thread runs it: its own copy of the module, loaded from
// the file's bytes on the thread's first call. One copy must not serve several threads: TorchScript
// folds `torch.Generator()` into a constant of the compiled graph, one generator object that
// concurrent calls would seed and draw from at the same time.
struct ScriptTransform {
  Bytes bytes;
  std::string path;
  bool seeded = false;
  // Never reused, unlike an address, so a thread never picks up another transform's module.
  const uint64_t id = next_id()++;

  static std::atomic<uint64_t>& next_id() {
    static std::atomic<uint64_t> counter{0};
    return counter;
  }

  torch::jit::Module& module_of_this_thread() const {
    thread_local std::unordered_map<uint64_t, std::shared_ptr<torch::jit::Module>> modules;
    auto& module = modules[id];
    if (!module) {
      module = std::make_shared<torch::jit::Module>(Model::from_torchscript_bytes(bytes, path).torchscript());
      module->eval();
    }
    return *module;
  }
};

}  // namespace

namespace {

// What a transform's forward returned, in the input's form: a tensor, or a tuple of as many tensors.
Tensors transformed(const c10::IValue& output, const Tensors& input, const std::string& path) {
  if (!input.is_tuple()) {
    DPT_CHECK(output.isTensor(), DataError, "--transform ", path, ": forward returned a ", output.tagKind(),
              ", expected the transformed input tensor");
    return output.toTensor();
  }
  DPT_CHECK(output.isTuple() && output.toTupleRef().elements().size() == input.parts().size(), DataError,
            "--transform ", path, ": forward returned a ", output.tagKind(), "; the inputs are a tuple of ",
            input.parts().size(), " tensors, so it must return a tuple of as many");
  std::vector<torch::Tensor> parts;
  for (const auto& item : output.toTupleRef().elements()) {
    DPT_CHECK(item.isTensor(), DataError, "--transform ", path, ": forward returned a tuple holding a ",
              item.tagKind());
    parts.push_back(item.toTensor());
  }
  return Tensors::tuple(std::move(parts));
}

}  // namespace

Transform script_transform(const std::string& path) { return script_transform(path, read_file(path)); }

Transform script_transform(const std::string& path, Bytes bytes) {
  auto transform = std::make_shared<ScriptTransform>();
  transform->path = path;
  transform->bytes = std::move(bytes);
  auto model = Model::from_torchscript_bytes(transform->bytes, path);  // ModelError naming the file
  const auto& schema = model.torchscript().get_method("forward").function().getSchema();
  const size_t arguments = schema.arguments().size() - 1;  // without self
  DPT_CHECK(arguments == 1 || arguments == 2, ModelError, "--transform ", path, ": forward takes ", arguments,
            " argument(s); expected forward(self, x: Tensor) or forward(self, x: Tensor, seed: int)");
  transform->seeded = arguments == 2;
  return [transform](Example example, SampleRng& rng) {
    torch::NoGradGuard no_grad;
    // Always the executor's unoptimized plan: its optimized plan, built after a few profiling
    // calls, may round differently (e.g. a fused x + a * y), and which samples a thread runs
    // before it exists depends on timing - results would depend on the worker count.
    torch::jit::GraphOptimizerEnabledGuard same_plan_every_call(false);
    std::vector<c10::IValue> inputs{example.input.ivalue()};  // a Tuple[Tensor, ...] for several
    // Non-negative and within TorchScript's int (int64).
    if (transform->seeded) inputs.emplace_back(static_cast<int64_t>(rng.next_u64() >> 1));
    auto output = transform->module_of_this_thread().forward(std::move(inputs));
    example.input = transformed(output, example.input, transform->path);
    return example;
  };
}

}  // namespace dpt
