#include "dptrain/parallel/comm/reduce_op.h"

#include "dptrain/core/error.h"

namespace dpt {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Min: return "min";
    case ReduceOp::Max: return "max";
    case ReduceOp::Product: return "product";
  }
  return "?";
}

ReduceOp parse_reduce_op(const std::string& name) {
  for (auto op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Min, ReduceOp::Max, ReduceOp::Product}) {
    if (name == to_string(op)) return op;
  }
  DPT_THROW(InvalidArgumentError, "unknown reduce op '", name, "' (use sum, avg, min, max or product)");
}

}  // namespace dpt
