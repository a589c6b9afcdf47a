// Condensing foreign exception messages (libtorch, TorchScript) to the line a user needs. In
// dptrain_core rather than with the errors (dptrain_base), whose symbols stay inside the library.
#include <sstream>
#include <string>
#include <vector>

#include "dptrain/core/error.h"

namespace dpt {

std::string one_line_reason(const std::string& message) {
  auto trim = [](std::string line) {
    const auto begin = line.find_first_not_of(" \t\r");
    const auto end = line.find_last_not_of(" \t\r");
    return begin == std::string::npos ? std::string() : line.substr(begin, end - begin + 1);
  };
  std::vector<std::string> lines;
  std::istringstream in(message);
  for (std::string line; std::getline(in, line);) {
    if (!trim(line).empty()) lines.push_back(line);
  }
  if (lines.empty()) return message;
  // TorchScript's interpreter: "The following operation failed...", the TorchScript and Python
  // tracebacks, then the exception itself ("RuntimeError: ...", "builtins.ValueError: ...") as the
  // last unindented line.
  if (message.find("Traceback of TorchScript") != std::string::npos) {
    for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
      if (!it->empty() && *it->begin() != ' ') {
        std::string line = trim(*it);
        for (const char* prefix : {"RuntimeError: ", "builtins."}) {
          if (line.rfind(prefix, 0) == 0) line = line.substr(std::string(prefix).size());
        }
        return line;
      }
    }
  }
  return trim(lines.front());  // c10::Error: the message, then C++ frames ("Exception raised from ...")
}

}  // namespace dpt
