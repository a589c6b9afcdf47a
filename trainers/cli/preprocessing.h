// Image preprocessing travels with the model: `train --out` saves --image-size, --mean and --std
// on the TorchScript module (as it saves the class names), and eval / infer apply them, so a model
// is never scored on pixels prepared otherwise than in training.
//
//   torch.jit.load("trained.pt").dptrain_image_mean      # [0.4914, 0.4822, 0.4465]
#pragma once

#include <torch/script.h>

#include <string>

#include "common_options.h"
#include "data_sources.h"

namespace dpt::cli {

// Records `data`'s image preprocessing on `module` (image folders only; other data has none).
void save_preprocessing(torch::jit::Module& module, const DataOptions& data);

// The preprocessing `model` was trained with, applied to `data` (an image folder): each of
// --image-size, --mean, --std the command line left out is the model's, one it gave must agree
// (else InvalidArgumentError naming both). A model without saved preprocessing changes nothing.
void apply_saved_preprocessing(Model& model, const CommonArgs& common, DataOptions& data);

}  // namespace dpt::cli
