#include "comm/tensor_checks.h"

#include <sstream>

#include "dptrain/core/error.h"

namespace dpt::detail {

bool is_supported_dtype(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32:
    case torch::kFloat64:
    case torch::kFloat16:
    case torch::kBFloat16:
    case torch::kInt32:
    case torch::kInt64:
    case torch::kUInt8:
      return true;
    default:
      return false;
  }
}

std::string describe(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << tensor.numel() << " x " << c10::toString(tensor.scalar_type()) << " on " << tensor.device();
  return out.str();
}

void check_tensor(const torch::Tensor& tensor, const std::string& who, const std::string& what,
                  const Communicator& comm) {
  DPT_CHECK(tensor.defined(), InvalidArgumentError, who, ": ", what, " is an undefined tensor");
  DPT_CHECK(is_supported_dtype(tensor.scalar_type()), InvalidArgumentError, who, ": ", what,
            " has dtype ", c10::toString(tensor.scalar_type()),
            "; supported: float32, float64, float16, bfloat16, int32, int64, uint8");
  DPT_CHECK(tensor.is_contiguous(), InvalidArgumentError, who, ": ", what,
            " is not contiguous (shape ", tensor.sizes(), ", strides ", tensor.strides(),
            "); pass tensor.contiguous() and copy the result back");
  comm.check_device(tensor, what);
}

void check_reduce_op(ReduceOp op, c10::ScalarType dtype, const std::string& who, const std::string& what) {
  DPT_CHECK(op != ReduceOp::Avg || c10::isFloatingType(dtype), InvalidArgumentError, who, ": ", what,
            ": op avg needs a floating-point tensor, got ", c10::toString(dtype),
            " (use sum and divide, or convert to float)");
}

void check_same_kind(const torch::Tensor& a, const torch::Tensor& b, const std::string& who,
                     const std::string& what) {
  DPT_CHECK(a.scalar_type() == b.scalar_type(), InvalidArgumentError, who, ": ", what,
            ": input and output dtypes differ (", c10::toString(a.scalar_type()), " vs ",
            c10::toString(b.scalar_type()), ")");
  DPT_CHECK(a.device() == b.device(), InvalidArgumentError, who, ": ", what,
            ": input and output devices differ (", a.device(), " vs ", b.device(), ")");
}

}  // namespace dpt::detail
