// The precompiled header of every dptrain target: libtorch's C++ frontend and TorchScript.
#pragma once
#include <torch/script.h>
#include <torch/torch.h>
