// SPDX-License-Identifier: Apache-2.0
#include "routing.hpp"

namespace mp::amqp {

namespace {

constexpr std::array<std::string_view, static_cast<size_t>(Var::Count)> kNames = {
    "node", "type", "seq", "stream", "key", "producer"};

}  // namespace

std::optional<RoutingTemplate> RoutingTemplate::parse(std::string_view t, std::string& why) {
    RoutingTemplate out;
    std::string literal;
    size_t literalBytes = 0;
    auto flush = [&] {
        if (!literal.empty()) {
            out.parts_.push_back(Part{std::move(literal), Var::Count});
            literal.clear();
        }
    };
    for (size_t i = 0; i < t.size(); ++i) {
        char c = t[i];
        if ((c == '{' || c == '}') && i + 1 < t.size() && t[i + 1] == c) {
            literal += c;
            ++literalBytes;
            ++i;
        } else if (c == '{') {
            size_t end = t.find('}', i);
            if (end == std::string_view::npos) {
                why = "unclosed '{' at " + std::to_string(i);
                return std::nullopt;
            }
            std::string_view name = t.substr(i + 1, end - i - 1);
            size_t v = 0;
            while (v < kNames.size() && kNames[v] != name) {
                ++v;
            }
            if (v == kNames.size()) {
                why = "unknown placeholder {" + std::string(name) +
                      "} (known: {node}, {type}, {seq}, {stream}, {key}, {producer})";
                return std::nullopt;
            }
            flush();
            out.parts_.push_back(Part{{}, static_cast<Var>(v)});
            i = end;
        } else if (c == '}') {
            why = "a lone '}' at " + std::to_string(i) + " (write }} for a brace)";
            return std::nullopt;
        } else {
            literal += c;
            ++literalBytes;
        }
    }
    if (literalBytes > 255) {
        why = "longer than 255 bytes";
        return std::nullopt;
    }
    flush();
    return out;
}

std::string RoutingTemplate::render(const Values& values) const {
    std::string out;
    for (const Part& p : parts_) {
        if (p.var == Var::Count) {
            out += p.literal;
        } else {
            out += values[static_cast<size_t>(p.var)];
        }
    }
    if (out.size() > 255) {
        out.resize(255);
    }
    return out;
}

}  // namespace mp::amqp
