// Argument checks shared by every backend (private to the parallel library), so each rejects bad
// input with the same clear InvalidArgumentError before anything reaches the wire.
#pragma once

#include <torch/torch.h>

#include <string>

#include "dptrain/parallel/comm/communicator.h"
#include "dptrain/parallel/comm/reduce_op.h"

namespace dpt::detail {

// float32, float64, float16, bfloat16, int32, int64, uint8.
bool is_supported_dtype(c10::ScalarType dtype);

// `who` names the communicator and rank ("mpi rank 1/4"), `what` the call and argument
// ("allreduce: tensor"). Checks: defined, contiguous, supported dtype, and on a device `comm`
// accepts (Communicator::check_device).
void check_tensor(const torch::Tensor& tensor, const std::string& who, const std::string& what,
                  const Communicator& comm);

// AVG needs a floating-point dtype (an integer average would silently truncate).
void check_reduce_op(ReduceOp op, c10::ScalarType dtype, const std::string& who, const std::string& what);

// Two tensors of one call agree on dtype and device.
void check_same_kind(const torch::Tensor& a, const torch::Tensor& b, const std::string& who,
                     const std::string& what);

std::string describe(const torch::Tensor& tensor);  // "4096 x float32 on cpu"

}  // namespace dpt::detail
