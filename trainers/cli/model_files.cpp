#include "model_files.h"

#include <algorithm>

#include "dptrain/core/error.h"
#include "dptrain/core/exported_program.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/serialize.h"
#include "dptrain/trainers/models/model_zoo.h"
#include "dptrain/trainers/loop/trainer.h"

namespace dpt::cli {

Model load_model(const std::string& name, const CommunicatorPtr& world, const Tensors& sample_parts,
                 std::optional<int64_t> max_label, ModelZooOptions shape, int64_t seed, const torch::Device& device) {
  if (is_builtin_language_model(name)) {
    torch::manual_seed(static_cast<uint64_t>(seed));
    const torch::Tensor& sample = sample_parts.tensor("the built-in GPTs take token windows; the inputs");
    DPT_CHECK(sample.dim() == 1 && !c10::isFloatingType(sample.scalar_type()), InvalidArgumentError, "--model ", name,
              " takes windows of token ids (--data DIR with train.bin); the samples are ",
              c10::toString(sample.scalar_type()), " of shape ", sample.sizes());
    shape.context = sample.size(0);
    // The vocabulary: the data's (meta.json's vocab_size, or the largest id + 1).
    if (shape.num_classes <= 0) shape.num_classes = max_label.value_or(255) + 1;
    return Model(make_builtin_model(name, shape));
  }
  if (is_builtin_model(name)) {
    torch::manual_seed(static_cast<uint64_t>(seed));
    const torch::Tensor& sample = sample_parts.tensor("the built-in models take one image; the inputs");
    DPT_CHECK(sample.dim() == 3, InvalidArgumentError, "the built-in models take images [C, H, W]; the samples are ",
              sample.sizes(), " (use your own TorchScript model or compiled package with --model)");
    shape.in_channels = sample.size(0);
    shape.height = sample.size(1);
    shape.width = sample.size(2);
    if (shape.num_classes <= 0) shape.num_classes = std::max<int64_t>(10, max_label.value_or(9) + 1);
    return Model(make_builtin_model(name, shape));
  }
  Bytes bytes = bytes_from_rank0(world, [&] { return read_file(name); });
  const std::string origin = world->rank() == 0 ? name : name + " (received from rank 0)";
  if (ExportedProgram::looks_like_package(bytes)) {
    // Loaded once, for the rank's GPU when it is a CUDA package (programs are bound to one device;
    // the index is ignored for a CPU package). The Trainer moves the other kinds.
    const int cuda_index = device.is_cuda() && device.has_index() ? device.index() : -1;
    return Model(ExportedProgram::from_bytes(bytes, origin, cuda_index));
  }
  return Model::from_bytes(bytes, origin);
}

std::string package_loss(Model& model, const std::string& asked, bool evaluates) {
  const std::string& theirs = model.exported().loss();
  DPT_CHECK(asked == "cross_entropy" || asked == theirs, InvalidArgumentError, "--loss ", asked, ": ",
            model.exported().origin(), " was exported with the loss ", theirs, ", which its training step computes");
  DPT_CHECK(!evaluates || is_known_loss(theirs), InvalidArgumentError, model.exported().origin(),
            " was exported with a custom loss (", theirs, "), which dptrain's evaluation cannot compute: pass --no-eval");
  return is_known_loss(theirs) ? theirs : asked;
}

void load_weights(Model& model, const std::string& path, const CommunicatorPtr& world) {
  const Bytes bytes = bytes_from_rank0(world, [&] { return read_file(path); });
  const std::string where = "--weights " + path;
  c10::IValue value = load_torch_save(bytes, where);
  // A checkpoint holds the state_dict under "model".
  if (value.isGenericDict() && value.toGenericDict().contains("model") &&
      value.toGenericDict().at("model").isGenericDict()) {
    value = value.toGenericDict().at("model");
  }
  const NamedTensors state = named_tensors_from(value, where);
  try {
    model.load_state_dict(state, /*strict=*/true);
  } catch (const ModelError& e) {
    DPT_THROW(ModelError, where, " does not fit the model: ", e.what());
  }
}

void save_state_dict(const Model& model, const std::string& path) {
  // The model's own order: parameters, then buffers (as torch's state_dict() lists them).
  auto entries = model.named_parameters();
  const auto buffers = model.named_buffers();
  entries.insert(entries.end(), buffers.begin(), buffers.end());
  write_file_atomic(path, save_for_pytorch(state_dict_for_pytorch(entries)));
}

}  // namespace dpt::cli
