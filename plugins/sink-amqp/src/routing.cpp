// SPDX-License-Identifier: Apache-2.0
#include "routing.hpp"

#include <set>

namespace mp::amqp {

namespace {

const std::set<std::string> kNames = {"node", "type", "seq", "stream", "key", "producer"};

// Walks the template: literal text and placeholder names in order; false when malformed.
template <class Literal, class Name>
bool walk(const std::string& t, Literal lit, Name name, std::string& why) {
    for (size_t i = 0; i < t.size(); ++i) {
        char c = t[i];
        if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {
            lit(c);
            ++i;
        } else if (c == '{') {
            size_t end = t.find('}', i);
            if (end == std::string::npos) {
                why = "unclosed '{' at " + std::to_string(i);
                return false;
            }
            if (!name(t.substr(i + 1, end - i - 1))) {
                why = "unknown placeholder {" + t.substr(i + 1, end - i - 1) +
                      "} (known: {node}, {type}, {seq}, {stream}, {key}, {producer})";
                return false;
            }
            i = end;
        } else if (c == '}') {
            why = "a lone '}' at " + std::to_string(i) + " (write }} for a brace)";
            return false;
        } else {
            lit(c);
        }
    }
    return true;
}

}  // namespace

bool validTemplate(const std::string& tmpl, std::string& why) {
    size_t literal = 0;
    if (!walk(
            tmpl, [&](char) { ++literal; },
            [](const std::string& n) { return kNames.count(n) != 0; }, why)) {
        return false;
    }
    if (literal > 255) {
        why = "longer than 255 bytes";
        return false;
    }
    return true;
}

std::string expand(const std::string& tmpl, const std::map<std::string, std::string>& values) {
    std::string out;
    std::string why;
    walk(
        tmpl, [&](char c) { out += c; },
        [&](const std::string& n) {
            auto it = values.find(n);
            if (it != values.end()) {
                out += it->second;
            }
            return true;
        },
        why);
    if (out.size() > 255) {
        out.resize(255);
    }
    return out;
}

}  // namespace mp::amqp
