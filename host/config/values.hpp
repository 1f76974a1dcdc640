// SPDX-License-Identifier: Apache-2.0
// Typed configuration values checked against mp_property tables (the same tables describe the
// host's own keys and every plugin's properties).
#pragma once

#include <mp/abi.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace mp::host {

/// A configuration problem; what() is one line: "FILE:LINE: KEY.PATH: problem".
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// One typed value.
struct Value {
    uint32_t type = 0;  // MP_PROP_*
    bool b = false;
    int64_t i = 0;
    double d = 0;
    std::string s;                  // STRING (and the textual form of scalars)
    std::vector<std::string> list;  // STRING_LIST
    bool isSet = false;             // from the file, not the default
};

/// A YAML node together with where it came from, for messages.
struct Setting {
    YAML::Node node;
    std::string keyPath;  // e.g. "probe.port" or "plugins.capture.config.port"
};

/// "FILE:LINE: " for a node (or "FILE: " when the node has no position).
std::string where(const std::string& file, const YAML::Node& node);

/// Converts one YAML node to the property's type; throws ConfigError naming file, line, key.
Value convert(const std::string& file, const Setting& setting, const mp_property& prop);

/// Parses a textual default value of a property (throws std::invalid_argument when malformed).
Value parseDefault(const mp_property& prop);

/// Validates settings against a property table: unknown keys, types, bounds, required keys.
/// `context` names the owner in messages ("plugin capture-pcap"). Defaults fill unset keys.
std::map<std::string, Value> validate(const std::string& file, const std::string& context,
                                      const YAML::Node& ownerNode,
                                      const std::map<std::string, Setting>& settings,
                                      const mp_property* props);

/// Number of entries of a NULL-terminated property table.
size_t propertyCount(const mp_property* props);

/// "bool", "int", ... for messages and --list-plugins.
const char* typeName(uint32_t type);

/// Splits "a, b,c" into trimmed non-empty items.
std::vector<std::string> splitList(const std::string& s);

}  // namespace mp::host
