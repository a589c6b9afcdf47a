#include "mpi_datatypes.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <mutex>

#include "dptrain/core/error.h"
#include "mpi_check.h"

namespace dpt::detail {
namespace {

struct Sum {
  static float apply(float a, float b) { return a + b; }
};
struct Product {
  static float apply(float a, float b) { return a * b; }
};
struct Min {
  static float apply(float a, float b) { return std::min(a, b); }
};
struct Max {
  static float apply(float a, float b) { return std::max(a, b); }
};

// inout[i] = in[i] (op) inout[i], widened to float.
template <typename T, typename Op>
void reduce_16bit(void* in, void* inout, int* length, MPI_Datatype* /*type*/) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *length; ++i) {
    b[i] = static_cast<T>(Op::apply(static_cast<float>(a[i]), static_cast<float>(b[i])));
  }
}

// Created once, on first use, after MPI_Init; freed by MPI_Finalize (never in a static destructor).
struct SixteenBitHandles {
  MPI_Datatype half_type = MPI_DATATYPE_NULL;
  MPI_Datatype bfloat16_type = MPI_DATATYPE_NULL;
  MPI_Op half_ops[4] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};  // sum, product, min, max
  MPI_Op bfloat16_ops[4] = {MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL, MPI_OP_NULL};

  SixteenBitHandles() {
    const char* who = "MPI float16/bfloat16 support";
    MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &half_type), who);
    MPI_CHECK(MPI_Type_commit(&half_type), who);
    MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &bfloat16_type), who);
    MPI_CHECK(MPI_Type_commit(&bfloat16_type), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::Half, Sum>, 1, &half_ops[0]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::Half, Product>, 1, &half_ops[1]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::Half, Min>, 1, &half_ops[2]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::Half, Max>, 1, &half_ops[3]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::BFloat16, Sum>, 1, &bfloat16_ops[0]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::BFloat16, Product>, 1, &bfloat16_ops[1]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::BFloat16, Min>, 1, &bfloat16_ops[2]), who);
    MPI_CHECK(MPI_Op_create(&reduce_16bit<c10::BFloat16, Max>, 1, &bfloat16_ops[3]), who);
  }
};

SixteenBitHandles& sixteen_bit() {
  // Leaked on purpose: MPI owns the handles' lifetime.
  static SixteenBitHandles* handles = new SixteenBitHandles();
  return *handles;
}

int op_index(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return 0;
    case ReduceOp::Product: return 1;
    case ReduceOp::Min: return 2;
    case ReduceOp::Max: return 3;
  }
  return 0;
}

}  // namespace

MPI_Datatype mpi_datatype(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kUInt8: return MPI_UINT8_T;
    case torch::kFloat16: return sixteen_bit().half_type;
    case torch::kBFloat16: return sixteen_bit().bfloat16_type;
    default:
      DPT_THROW(InvalidArgumentError, "dtype ", c10::toString(dtype), " has no MPI datatype");
  }
}

MPI_Op mpi_op(ReduceOp op, c10::ScalarType dtype) {
  if (dtype == torch::kFloat16) return sixteen_bit().half_ops[op_index(op)];
  if (dtype == torch::kBFloat16) return sixteen_bit().bfloat16_ops[op_index(op)];
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Avg: return MPI_SUM;
    case ReduceOp::Product: return MPI_PROD;
    case ReduceOp::Min: return MPI_MIN;
    case ReduceOp::Max: return MPI_MAX;
  }
  return MPI_SUM;
}

}  // namespace dpt::detail
