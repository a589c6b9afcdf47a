#include "config_file.h"

#include <toml++/toml.h>

#include <cstdio>
#include <sstream>

#include "dptrain/core/error.h"
#include "dptrain/core/fs.h"
#include "dptrain/core/serialize.h"

namespace dpt::cli {
namespace {

// A config file is a handful of options: anything larger is not one (a model, a data file).
constexpr size_t kMaxConfigBytes = 1 << 20;

std::string where(const std::string& path, const toml::source_region& source) {
  return path + ":" + std::to_string(source.begin.line);
}

std::string type_of(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    default: return "a date or time";
  }
}

std::string number_text(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

// One scalar as the command line would spell it, or "" when its TOML type does not fit `type`
// (CLI11's type name of the option: INT, UINT, FLOAT, TEXT, ...).
std::optional<std::string> scalar_text(const toml::node& node, const std::string& type) {
  const bool integer = type == "INT" || type == "UINT";
  const bool number = integer || type == "FLOAT";
  if (auto value = node.as_integer(); value && number) return std::to_string(value->get());
  if (auto value = node.as_floating_point(); value && type == "FLOAT") return number_text(value->get());
  if (auto value = node.as_string(); value && !number) return value->get();
  return std::nullopt;
}

std::string expected_for(const std::string& type) {
  if (type == "INT" || type == "UINT") return "an integer";
  if (type == "FLOAT") return "a number";
  return "a string";
}

// The arguments for one key of the command's section.
void add_key(std::vector<std::string>& args, const std::string& path, const std::string& section,
             const std::string& key, const toml::node& node, const CLI::App& command) {
  const std::string at = where(path, node.source()) + ": [" + section + "] " + key;
  const CLI::Option* option = key == "config" || key == "help" ? nullptr : command.get_option_no_throw("--" + key);
  DPT_CHECK(option != nullptr, InvalidArgumentError, at, ": unknown option (keys are the long options of `dptrain ",
            section, " --help`, without the dashes)");
  const std::string flag = "--" + key;
  if (option->get_items_expected_max() == 0) {  // a flag
    auto value = node.as_boolean();
    DPT_CHECK(value != nullptr, InvalidArgumentError, at, " is a flag: expected true or false, got ", type_of(node));
    if (value->get()) args.push_back(flag);
    return;
  }
  const std::string type = option->get_type_name();
  const bool many = option->get_items_expected_max() > 1;
  if (auto array = node.as_array()) {
    DPT_CHECK(many, InvalidArgumentError, at, " takes one value: expected ", expected_for(type), ", got an array");
    std::vector<std::string> items;
    for (const auto& item : *array) {
      auto text = scalar_text(item, type);
      DPT_CHECK(text.has_value(), InvalidArgumentError, at, ": expected an array of ", expected_for(type),
                " values, got ", type_of(item), " in it");
      items.push_back(*text);
    }
    if (option->get_multi_option_policy() == CLI::MultiOptionPolicy::TakeAll || option->get_delimiter() == '\0') {
      for (const auto& item : items) args.insert(args.end(), {flag, item});
    } else {
      std::string joined;
      for (const auto& item : items) joined += (joined.empty() ? "" : std::string(1, option->get_delimiter())) + item;
      args.insert(args.end(), {flag, joined});
    }
    return;
  }
  auto text = scalar_text(node, type);
  DPT_CHECK(text.has_value(), InvalidArgumentError, at, ": expected ", expected_for(type), ", got ", type_of(node));
  args.insert(args.end(), {flag, *text});
}

}  // namespace

std::vector<std::string> config_arguments(const std::string& path, const std::string& section,
                                          const CLI::App& command) {
  DPT_CHECK(fs::exists(path), InvalidArgumentError, "--config ", path, ": no such file");
  DPT_CHECK(fs::is_regular_file(path), InvalidArgumentError, "--config ", path, ": not a regular file");
  const Bytes bytes = read_file_bounded(path, kMaxConfigBytes, "--config");
  toml::table table;
  try {
    table = toml::parse(std::string_view(bytes.data(), bytes.size()), path);
  } catch (const toml::parse_error& e) {
    DPT_THROW(InvalidArgumentError, where(path, e.source()), ": not a TOML file: ", e.description());
  }
  std::vector<std::string> args;
  for (const auto& [key, node] : table) {
    const std::string name(key.str());
    const bool known = name == "train" || name == "eval" || name == "infer";
    DPT_CHECK(known && node.is_table(), InvalidArgumentError, where(path, key.source()), ": ", name,
              known ? " must be a section ([" + name + "])" : std::string(": unknown key at the top level (options go in "
                                                                           "[train], [eval] or [infer] sections)"));
    if (name != section) continue;
    for (const auto& [option_key, value] : *node.as_table()) {
      add_key(args, path, section, std::string(option_key.str()), value, command);
    }
  }
  return args;
}

// Replaces `--config FILE` (or --config=FILE) by the file's options for the subcommand, placed
// right after the subcommand's name so that what the command line says takes precedence.
void insert_config_arguments(std::vector<std::string>& args, const std::vector<CLI::App*>& commands) {
  // The subcommand: the first argument naming one.
  auto find_command = [&]() -> std::pair<size_t, CLI::App*> {
    for (size_t i = 0; i < args.size(); ++i) {
      for (auto* candidate : commands) {
        if (args[i] == candidate->get_name()) return {i, candidate};
      }
    }
    return {args.size(), nullptr};
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const bool joined = args[i].rfind("--config=", 0) == 0;
    if (args[i] != "--config" && !joined) continue;
    DPT_CHECK(joined || i + 1 < args.size(), InvalidArgumentError, "--config needs a file");
    const std::string path = joined ? args[i].substr(9) : args[i + 1];
    args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i + (joined ? 1 : 2)));
    const auto [command, app] = find_command();
    DPT_CHECK(app != nullptr, InvalidArgumentError, "--config ", path, ": name the subcommand (dptrain train --config ",
              path, ")");
    auto from_file = config_arguments(path, app->get_name(), *app);
    args.insert(args.begin() + static_cast<std::ptrdiff_t>(command + 1), from_file.begin(), from_file.end());
    return;
  }
}

}  // namespace dpt::cli
