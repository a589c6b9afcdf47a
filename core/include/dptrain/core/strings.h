// Lists inside messages ("choose one of: sgd, adam, adamw"): one way to write them everywhere.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace dpt {

// The items of any range, streamed and separated: joined({"a", "b"}) == "a, b".
template <typename Range>
std::string joined(const Range& items, std::string_view separator = ", ") {
  std::ostringstream out;
  bool first = true;
  for (const auto& item : items) {
    if (!first) out << separator;
    out << item;
    first = false;
  }
  return out.str();
}

}  // namespace dpt
