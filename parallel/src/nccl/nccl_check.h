// CUDA_CHECK and NCCL_CHECK: a failed CUDA or NCCL call becomes a CommunicationError in the
// library's own words (ncclGetErrorString plus ncclGetLastError's detail).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "dptrain/core/error.h"

#define CUDA_CHECK(call, ...)                                                                  \
  do {                                                                                         \
    cudaError_t cuda_check_rc_ = (call);                                                       \
    if (cuda_check_rc_ != cudaSuccess) {                                                       \
      DPT_THROW(CommunicationError, __VA_ARGS__, ": ", #call, " failed: ",                     \
                cudaGetErrorString(cuda_check_rc_));                                           \
    }                                                                                          \
  } while (false)

// `call` is an NCCL call or an ncclResult_t it returned; ncclInProgress (non-blocking
// communicators) is not an error here: see NcclCommunicator::State::settle.
#define NCCL_CHECK(call, ...)                                                                  \
  do {                                                                                         \
    ncclResult_t nccl_check_rc_ = (call);                                                      \
    if (nccl_check_rc_ != ncclSuccess && nccl_check_rc_ != ncclInProgress) {                   \
      const char* nccl_check_last_ = ncclGetLastError(nullptr);                                \
      DPT_THROW(CommunicationError, __VA_ARGS__, ": NCCL failed: ",                            \
                ncclGetErrorString(nccl_check_rc_), (nccl_check_last_ ? " (" : ""),            \
                (nccl_check_last_ ? nccl_check_last_ : ""), (nccl_check_last_ ? ")" : ""));    \
    }                                                                                          \
  } while (false)
