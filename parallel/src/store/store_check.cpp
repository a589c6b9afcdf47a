#include "store/store_check.h"

#include <algorithm>
#include <cctype>

#include "dptrain/core/error.h"

namespace dpt::detail {

void rethrow_store_failure(const std::exception& failure, const std::string& who, const std::string& description,
                           std::chrono::milliseconds timeout) {
  std::string message = failure.what();
  message = message.substr(0, message.find('\n'));
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.find("timeout") != std::string::npos || lower.find("timed out") != std::string::npos) {
    DPT_THROW(TimeoutError, who, ": ", description, " did not complete within ",
              std::chrono::duration<double>(timeout).count(), " s (a peer rank died or hangs): ", message);
  }
  DPT_THROW(CommunicationError, who, ": ", description, " failed (a peer rank died?): ", message);
}

}  // namespace dpt::detail
