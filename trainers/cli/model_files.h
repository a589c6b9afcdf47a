// The model side of the dptrain command (private to it): which model --model names, the loss a
// compiled package was exported with, --weights to start from, and --out of a compiled package.
#pragma once

#include <optional>
#include <string>

#include "dptrain/core/data/tensors.h"
#include "dptrain/core/model.h"
#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/trainers/models/model_zoo.h"

namespace dpt::cli {

// A built-in name (built from `seed` on every rank; `sample` is one input of the data, which sets
// the image shape or the GPT's context; its class count, a GPT's vocabulary, is
// `shape.num_classes` when > 0, else the data's: `max_label` + 1, at least 10 for images; the GPT's
// size from `shape`) or a file read by rank 0 and broadcast: TorchScript or a compiled package
// (.pt2, loaded for `device`).
Model load_model(const std::string& name, const CommunicatorPtr& world, const Tensors& sample,
                 std::optional<int64_t> max_label, ModelZooOptions shape, int64_t seed, const torch::Device& device);

// The loss a compiled package computes in its training step; InvalidArgumentError when `asked`
// (--loss; "cross_entropy" is the default) names another, or when evaluation needs a loss dptrain
// cannot compute.
std::string package_loss(Model& model, const std::string& asked, bool evaluates);

// --weights FILE: a state_dict written by torch.save (model.state_dict(), the --out of a compiled
// package) or a dptrain checkpoint (its "model" entry), read by rank 0 and broadcast, loaded
// strictly: one error naming the file and the first key or shape that does not fit.
void load_weights(Model& model, const std::string& path, const CommunicatorPtr& world);

// --out of a compiled package: its state_dict under the original model's names, for
// model.load_state_dict(torch.load(FILE)) in PyTorch (written atomically).
void save_state_dict(const Model& model, const std::string& path);

}  // namespace dpt::cli
