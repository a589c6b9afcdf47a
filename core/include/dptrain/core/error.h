// The one error family of dptrain.
//
// Every failure a user can cause or meet (bad option, corrupt file, lost peer, timeout) is thrown as
// a dpt::Error subclass with a message that names what is wrong: the file, the rank, the
// parameter. Programs catch dpt::Error in main (see dpt::run_main) and print that one line.
// Broken invariants of dptrain itself use DPT_ASSERT and are InternalError: a bug, not user input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace dpt {

enum class ErrorKind {
  InvalidArgument,  // an option, a parameter or an API argument is out of range or inconsistent
  Io,               // a file cannot be read or written
  Data,             // a data file exists but its content is wrong (truncated, bad magic, ...)
  Model,            // a model cannot be loaded, or does not fit the data / the other ranks
  Communication,    // a collective failed (MPI/NCCL error, mismatched calls across ranks)
  Timeout,          // a collective or a peer did not answer in time
  Numerical,        // NaN / Inf where a number was required
  Unsupported,      // this build or this device cannot do what was asked
  Internal,         // a bug in dptrain
};

const char* to_string(ErrorKind kind);

// The line of a foreign exception's message (libtorch, TorchScript, the standard library) that says
// what went wrong: the first line of a c10::Error (not its C++ frames), the exception at the end of
// a TorchScript traceback.
std::string one_line_reason(const std::string& message);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

#define DPT_DEFINE_ERROR(Name, Kind) \
  class Name : public Error {        \
   public:                           \
    explicit Name(const std::string& message) : Error(ErrorKind::Kind, message) {} \
  }

DPT_DEFINE_ERROR(InvalidArgumentError, InvalidArgument);
DPT_DEFINE_ERROR(IoError, Io);
DPT_DEFINE_ERROR(DataError, Data);
DPT_DEFINE_ERROR(ModelError, Model);
DPT_DEFINE_ERROR(CommunicationError, Communication);
DPT_DEFINE_ERROR(TimeoutError, Timeout);
DPT_DEFINE_ERROR(NumericalError, Numerical);
DPT_DEFINE_ERROR(UnsupportedError, Unsupported);
DPT_DEFINE_ERROR(InternalError, Internal);
#undef DPT_DEFINE_ERROR

namespace detail {
template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}
}  // namespace detail

}  // namespace dpt

// DPT_CHECK(batch_size > 0, InvalidArgumentError, "--batch-size must be > 0, got ", batch_size);
#define DPT_CHECK(condition, ErrorType, ...)                      \
  do {                                                            \
    if (!(condition)) {                                           \
      throw ::dpt::ErrorType(::dpt::detail::concat(__VA_ARGS__)); \
    }                                                             \
  } while (false)

#define DPT_THROW(ErrorType, ...) throw ::dpt::ErrorType(::dpt::detail::concat(__VA_ARGS__))

// Invariants of dptrain's own code; a failure is a bug and says where.
#define DPT_ASSERT(condition, ...)                                                              \
  do {                                                                                          \
    if (!(condition)) {                                                                         \
      throw ::dpt::InternalError(::dpt::detail::concat("internal error at ", __FILE__, ":",     \
                                                       __LINE__, ": ", #condition, ". ", ##__VA_ARGS__)); \
    }                                                                                           \
  } while (false)
