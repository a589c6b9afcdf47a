// Mapping torch dtypes and ReduceOps to MPI (private).
//
// MPI has no 16-bit floating types. float16 and bfloat16 travel as 2-byte derived datatypes
// (one per dtype) and are reduced by user-defined MPI ops that widen each pair of elements to
// float, combine, and round back - the same per-step rounding as NCCL's half reductions, at half
// the bytes of converting the whole tensor to float32 first.
#pragma once

#include <mpi.h>
#include <torch/torch.h>

#include "dptrain/parallel/comm/reduce_op.h"

namespace dpt::detail {

// Needs MPI initialised. The handles live until MPI_Finalize frees them.
MPI_Datatype mpi_datatype(c10::ScalarType dtype);
// Avg maps to the sum (the caller divides).
MPI_Op mpi_op(ReduceOp op, c10::ScalarType dtype);

}  // namespace dpt::detail
