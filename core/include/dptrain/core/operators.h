// Custom operators: libraries that register TorchScript operators (TORCH_LIBRARY), loaded before a
// model that calls them is read - your own C++/CUDA operators, or torchvision's (its _C.so).
//
//   dpt::load_operator_library("build/libmy_ops.so");   // or: dptrain ... --load-ops build/libmy_ops.so
//   auto model = dpt::Model::load_torchscript("net.pt");  // may call torch.ops.my_ops.*
//
// The library is dlopen'ed RTLD_NOW | RTLD_GLOBAL once per process (loading it again is a no-op).
// Libraries built as Python extension modules (torchvision's _C.so) also need torch's Python
// bindings (libtorch_python.so, found next to libtorch) and so Python's C API: load Python's shared
// library first (`--load-ops <python LIBDIR>/libpython3.X.so.1.0`; nothing of Python runs). Each
// failure is one error naming the library and what it lacks.
#pragma once

#include <string>
#include <vector>

namespace dpt {

void load_operator_library(const std::string& path);

// The libraries DPTRAIN_LOAD_OPS names (colon-separated), in order.
std::vector<std::string> operator_libraries_from_env();

}  // namespace dpt
