// SPDX-License-Identifier: Apache-2.0
#include "config/values.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <mp/sdk.hpp>
#include <set>

namespace mp::host {

std::string where(const std::string& file, const YAML::Node& node) {
    if (node.IsDefined() && node.Mark().line >= 0) {
        return file + ":" + std::to_string(node.Mark().line + 1) + ": ";
    }
    return file + ": ";
}

const char* typeName(uint32_t type) {
    switch (type) {
        case MP_PROP_BOOL:
            return "bool";
        case MP_PROP_INT:
            return "int";
        case MP_PROP_DOUBLE:
            return "double";
        case MP_PROP_STRING:
            return "string";
        case MP_PROP_STRING_LIST:
            return "list";
        case MP_PROP_JSON:
            return "json";
        default:
            return "?";
    }
}

size_t propertyCount(const mp_property* props) {
    size_t n = 0;
    while (props != nullptr && props[n].name != nullptr) {
        ++n;
    }
    return n;
}

std::vector<std::string> splitList(const std::string& s) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos) {
            comma = s.size();
        }
        std::string item = s.substr(pos, comma - pos);
        size_t b = item.find_first_not_of(" \t");
        size_t e = item.find_last_not_of(" \t");
        if (b != std::string::npos) {
            out.push_back(item.substr(b, e - b + 1));
        }
        pos = comma + 1;
    }
    return out;
}

namespace {

const char* nodeKind(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Map:
            return "a mapping";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Null:
            return "nothing";
        default:
            return "a scalar";
    }
}

bool parseInt(const std::string& text, int64_t& out) {
    std::string_view sv = text;
    if (!sv.empty() && sv.front() == '+') {
        sv.remove_prefix(1);
    }
    auto [ptr, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), out);
    return ec == std::errc() && ptr == sv.data() + sv.size() && !sv.empty();
}

bool parseDouble(const std::string& text, double& out) {
    if (text.empty()) {
        return false;
    }
    char* end = nullptr;
    errno = 0;
    out = std::strtod(text.c_str(), &end);
    return errno == 0 && end == text.c_str() + text.size() && std::isfinite(out);
}

bool parseBool(const std::string& text, bool& out) {
    static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
    static const std::set<std::string> no = {"false", "False", "FALSE", "no", "No", "off", "Off"};
    if (yes.count(text) != 0) {
        out = true;
        return true;
    }
    if (no.count(text) != 0) {
        out = false;
        return true;
    }
    return false;
}

constexpr size_t kMaxJsonBytes = 1u << 20;
constexpr int kMaxJsonDepth = 32;

// A YAML value as JSON text (MP_PROP_JSON): quoted scalars are strings; plain ones that read as
// null, a boolean or a number become those, the others strings. Returns the problem or "".
std::string yamlToJson(const YAML::Node& n, int depth, std::string& out) {
    if (depth > kMaxJsonDepth) {
        return "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    }
    if (out.size() > kMaxJsonBytes) {
        return "larger than 1 MiB as JSON";
    }
    switch (n.Type()) {
        case YAML::NodeType::Undefined:
        case YAML::NodeType::Null:
            out += "null";
            return "";
        case YAML::NodeType::Scalar: {
            const std::string& s = n.Scalar();
            bool b = false;
            int64_t i = 0;
            double d = 0;
            if (n.Tag() == "!") {
                out += mp::jsonString(s);  // quoted: a string whatever it reads as
            } else if (s == "null" || s == "~") {
                out += "null";
            } else if (parseBool(s, b)) {
                out += b ? "true" : "false";
            } else if (parseInt(s, i)) {
                out += std::to_string(i);
            } else if (parseDouble(s, d) && s.find_first_of("nN") == std::string::npos) {
                char buf[32];
                auto r = std::to_chars(buf, buf + sizeof buf, d);
                out.append(buf, r.ptr);
            } else {
                out += mp::jsonString(s);
            }
            return "";
        }
        case YAML::NodeType::Sequence: {
            out += '[';
            bool first = true;
            for (const auto& item : n) {
                out += first ? "" : ",";
                first = false;
                if (std::string p = yamlToJson(item, depth + 1, out); !p.empty()) {
                    return p;
                }
            }
            out += ']';
            return "";
        }
        case YAML::NodeType::Map: {
            out += '{';
            bool first = true;
            std::set<std::string> keys;
            for (const auto& kv : n) {
                if (!kv.first.IsScalar()) {
                    return "mapping keys must be scalars";
                }
                if (!keys.insert(kv.first.Scalar()).second) {
                    return "key '" + kv.first.Scalar().substr(0, 64) + "' given twice";
                }
                out += first ? "" : ",";
                first = false;
                out += mp::jsonString(kv.first.Scalar());
                out += ':';
                if (std::string p = yamlToJson(kv.second, depth + 1, out); !p.empty()) {
                    return p;
                }
            }
            out += '}';
            return "";
        }
    }
    return "unknown YAML node";
}

std::string jsonValue(const YAML::Node& n, Value& v) {
    v.s.clear();
    std::string problem = yamlToJson(n, 0, v.s);
    if (problem.empty() && v.s.size() > kMaxJsonBytes) {
        problem = "larger than 1 MiB as JSON";
    }
    return problem;
}

// Checks a value against bounds and choices; returns the problem or "".
std::string checkRange(const mp_property& p, const Value& v) {
    if (p.min < p.max) {
        if (p.type == MP_PROP_INT && (v.i < p.min || v.i > p.max)) {
            return "value " + std::to_string(v.i) + " is out of range [" + std::to_string(p.min) +
                   ", " + std::to_string(p.max) + "]";
        }
        if (p.type == MP_PROP_DOUBLE &&
            (v.d < static_cast<double>(p.min) || v.d > static_cast<double>(p.max))) {
            return "value " + v.s + " is out of range [" + std::to_string(p.min) + ", " +
                   std::to_string(p.max) + "]";
        }
    }
    if (p.type == MP_PROP_STRING && p.choices != nullptr) {
        std::vector<std::string> choices;
        std::string all = p.choices;
        size_t pos = 0;
        while (pos <= all.size()) {
            size_t bar = all.find('|', pos);
            if (bar == std::string::npos) {
                bar = all.size();
            }
            choices.push_back(all.substr(pos, bar - pos));
            pos = bar + 1;
        }
        for (const auto& c : choices) {
            if (c == v.s) {
                return "";
            }
        }
        return "'" + v.s + "' is not one of " + all;
    }
    return "";
}

// Converts scalar text to a value of the property's type; returns the problem or "". The
// problem of a secret property never quotes its value.
std::string fromTextShown(const mp_property& p, const std::string& text, Value& v);

std::string fromText(const mp_property& p, const std::string& text, Value& v) {
    std::string problem = fromTextShown(p, text, v);
    if (!problem.empty() && (p.flags & MP_PROP_SECRET) != 0) {
        return std::string("not a valid ") + typeName(p.type) +
               " (a secret: its value is not shown)";
    }
    return problem;
}

std::string fromTextShown(const mp_property& p, const std::string& text, Value& v) {
    v.type = p.type;
    v.s = text;
    switch (p.type) {
        case MP_PROP_BOOL:
            if (!parseBool(text, v.b)) {
                return "expected true or false, got '" + text + "'";
            }
            break;
        case MP_PROP_INT:
            if (!parseInt(text, v.i)) {
                return "expected an integer, got '" + text + "'";
            }
            break;
        case MP_PROP_DOUBLE:
            if (!parseDouble(text, v.d)) {
                return "expected a number, got '" + text + "'";
            }
            break;
        case MP_PROP_STRING:
            break;
        case MP_PROP_STRING_LIST:
            v.list = splitList(text);
            break;
        case MP_PROP_JSON:  // a default, in YAML syntax ("[]", "{a: 1}")
            try {
                return jsonValue(YAML::Load(text), v);
            } catch (const YAML::Exception& e) {
                return std::string("not YAML: ") + e.what();
            }
        default:
            return "property has an unknown type " + std::to_string(p.type);
    }
    return checkRange(p, v);
}

}  // namespace

Value parseDefault(const mp_property& p) {
    Value v;
    v.type = p.type;
    if (p.default_value == nullptr) {
        return v;
    }
    std::string problem = fromText(p, p.default_value, v);
    if (!problem.empty()) {
        throw std::invalid_argument("default of '" + std::string(p.name) + "': " + problem);
    }
    return v;
}

Value convert(const std::string& file, const Setting& setting, const mp_property& p) {
    const YAML::Node& n = setting.node;
    auto fail = [&](const std::string& problem) {
        throw ConfigError(where(file, n) + setting.keyPath + ": " + problem);
    };
    Value v;
    v.type = p.type;
    v.isSet = true;
    if (p.type == MP_PROP_JSON) {
        std::string problem = jsonValue(n, v);
        if (!problem.empty()) {
            fail(problem);
        }
        return v;
    }
    if (p.type == MP_PROP_STRING_LIST && n.IsSequence()) {
        for (const auto& item : n) {
            if (!item.IsScalar()) {
                throw ConfigError(where(file, item) + setting.keyPath +
                                  ": list items must be scalars, got " + nodeKind(item));
            }
            v.list.push_back(item.Scalar());
        }
        return v;
    }
    if (!n.IsScalar()) {
        fail(std::string("expected ") +
             (p.type == MP_PROP_STRING_LIST ? "a list or a string" : typeName(p.type)) + ", got " +
             nodeKind(n));
    }
    std::string problem = fromText(p, n.Scalar(), v);
    if (!problem.empty()) {
        fail(problem);
    }
    return v;
}

std::map<std::string, Value> validate(const std::string& file, const std::string& context,
                                      const YAML::Node& ownerNode,
                                      const std::map<std::string, Setting>& settings,
                                      const mp_property* props) {
    std::map<std::string, Value> out;
    std::map<std::string, const mp_property*> byName;
    for (size_t i = 0; props != nullptr && props[i].name != nullptr; ++i) {
        byName[props[i].name] = &props[i];
    }
    for (const auto& [key, setting] : settings) {
        auto it = byName.find(key);
        if (it == byName.end()) {
            std::string known;
            for (const auto& [name, _] : byName) {
                known += (known.empty() ? "" : ", ") + name;
            }
            throw ConfigError(where(file, setting.node) + setting.keyPath + ": unknown key for " +
                              context + " (known: " + (known.empty() ? "none" : known) + ")");
        }
        if (setting.node.IsNull()) {
            continue;  // "key:" with no value means the default
        }
        out[key] = convert(file, setting, *it->second);
    }
    for (const auto& [name, p] : byName) {
        if (out.count(name) != 0) {
            continue;
        }
        if ((p->flags & MP_PROP_REQUIRED) != 0) {
            throw ConfigError(where(file, ownerNode) + context + ": required key '" + name +
                              "' is missing");
        }
        out[name] = parseDefault(*p);
    }
    return out;
}

}  // namespace mp::host
