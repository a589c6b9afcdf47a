#include "dptrain/core/error.h"

namespace dpt {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument: return "invalid argument";
    case ErrorKind::Io: return "I/O error";
    case ErrorKind::Data: return "data error";
    case ErrorKind::Model: return "model error";
    case ErrorKind::Communication: return "communication error";
    case ErrorKind::Timeout: return "timeout";
    case ErrorKind::Numerical: return "numerical error";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::Internal: return "internal error";
  }
  return "error";
}

}  // namespace dpt
