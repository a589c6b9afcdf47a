// Typed access to environment variables, with errors that name the variable, and the host's name.
#pragma once

#include <optional>
#include <string>

namespace dpt::env {

std::optional<std::string> get(const char* name);
std::string get_or(const char* name, const std::string& fallback);
// Throws InvalidArgumentError ("DPTRAIN_TIMEOUT='abc' is not an integer") on junk.
std::optional<long long> get_int(const char* name);
long long get_int_or(const char* name, long long fallback);
bool get_flag(const char* name, bool fallback);  // 1/0, true/false, yes/no, on/off

// This machine's host name (gethostname); "unknown" when it cannot be read.
std::string host_name();

}  // namespace dpt::env
