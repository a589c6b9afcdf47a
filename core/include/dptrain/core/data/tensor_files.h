// Datasets saved from PyTorch as tensor files: what a PyTorch team already has.
//
//   # Python
//   torch.save({"inputs": X, "targets": Y}, "data/train.pt")        # X: [N, ...], Y: [N, ...]
//   for i, (x, y) in enumerate(chunks): torch.save({"inputs": x, "targets": y}, f"data/train-{i:05d}.pt")
//
//   // C++
//   dpt::TensorDataset train = dpt::load_tensor_file("data/train.pt");
//
// Any shapes and dtypes; the first dimension counts samples and must agree between inputs and
// targets. Every problem is one DataError naming the file and what is wrong (not a torch.save
// file, not a dict, a missing "inputs"/"targets" key, a non-tensor value, counts that disagree).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "dptrain/core/data/tensor_dataset.h"

namespace dpt {

// Besides "inputs" and "targets", a file may declare its classes: "num_classes" (an int) or
// "classes" (a list of names); class labels are then checked against it.
TensorDataset load_tensor_file(const std::string& path);

// The shards of one split, in file order: <dir>/<split>-00000.pt, <split>-00001.pt, ... (any
// number of digits, sorted by number). Empty when the directory holds none.
std::vector<std::string> list_shards(const std::string& directory, const std::string& split);

}  // namespace dpt
