#include "dptrain/core/env.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include <unistd.h>

#include "dptrain/core/error.h"

namespace dpt::env {

std::optional<std::string> get(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::string get_or(const char* name, const std::string& fallback) {
  return get(name).value_or(fallback);
}

std::optional<long long> get_int(const char* name) {
  auto value = get(name);
  if (!value) return std::nullopt;
  try {
    size_t used = 0;
    long long parsed = std::stoll(*value, &used);
    if (used == value->size()) return parsed;
  } catch (const std::exception&) {
  }
  DPT_THROW(InvalidArgumentError, "environment variable ", name, "='", *value, "' is not an integer");
}

long long get_int_or(const char* name, long long fallback) { return get_int(name).value_or(fallback); }

bool get_flag(const char* name, bool fallback) {
  auto value = get(name);
  if (!value) return fallback;
  std::string lower = *value;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "0" || lower == "false" || lower == "no" || lower == "off") return false;
  DPT_THROW(InvalidArgumentError, "environment variable ", name, "='", *value,
            "' is not a flag (use 1/0, true/false, yes/no, on/off)");
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "unknown";
  return name;
}

}  // namespace dpt::env
