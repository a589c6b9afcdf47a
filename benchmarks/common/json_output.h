// Writing a benchmark's result document.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace dpt::bench {

// Writes `document` (indented) to `path`, through a temporary file renamed into place so a reader
// never sees half a file; "-" writes to stdout; "" does nothing. IoError naming the path on failure.
void write_json(const std::string& path, const nlohmann::json& document);

}  // namespace dpt::bench
