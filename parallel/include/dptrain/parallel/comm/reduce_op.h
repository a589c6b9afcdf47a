// Reductions a Communicator can apply.
#pragma once

#include <string>

namespace dpt {

enum class ReduceOp {
  Sum,
  Avg,      // Sum divided by the world size; floating-point dtypes only
  Min,
  Max,
  Product,
};

const char* to_string(ReduceOp op);
ReduceOp parse_reduce_op(const std::string& name);  // "sum", "avg", ...; throws InvalidArgumentError

}  // namespace dpt
