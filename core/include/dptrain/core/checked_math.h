// Products and sums of numbers a user typed (batch sizes, step counts, image sizes), checked:
// a wrapped value would silently train a different schedule, or divide by zero (SIGFPE).
#pragma once

#include <cstdint>
#include <string>

#include "dptrain/core/error.h"

namespace dpt {

// a * b, or InvalidArgumentError "<what> overflows: a x b is beyond 2^63".
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  int64_t result = 0;
  DPT_CHECK(!__builtin_mul_overflow(a, b, &result), InvalidArgumentError, what, " overflows: ", a, " x ", b,
            " is beyond 2^63");
  return result;
}

inline int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  int64_t result = 0;
  DPT_CHECK(!__builtin_add_overflow(a, b, &result), InvalidArgumentError, what, " overflows: ", a, " + ", b,
            " is beyond 2^63");
  return result;
}

}  // namespace dpt
