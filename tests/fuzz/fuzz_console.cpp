// SPDX-License-Identifier: Apache-2.0
// Fuzz target: console-web's window. The first line is a request's query parameters
// (name=value&...), the rest a report. Whatever they hold, the answers are valid JSON and the
// held bytes stay within the bound.
#include <Poco/JSON/Parser.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "window.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string in(reinterpret_cast<const char*>(data), size);
    size_t nl = in.find('\n');
    std::string params = in.substr(0, nl);
    std::string report = nl == std::string::npos ? "" : in.substr(nl + 1);
    std::map<std::string, std::string> kv;
    size_t pos = 0;
    while (pos <= params.size()) {
        size_t amp = params.find('&', pos);
        std::string part =
            params.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
        size_t eq = part.find('=');
        if (eq != std::string::npos) {
            kv[part.substr(0, eq)] = part.substr(eq + 1);
        }
        if (amp == std::string::npos) {
            break;
        }
        pos = amp + 1;
    }
    mp::console::Query q;
    try {
        q = mp::console::parseQuery([&](const char* name) -> std::optional<std::string> {
            auto it = kv.find(name);
            return it == kv.end() ? std::nullopt : std::optional<std::string>(it->second);
        });
    } catch (const std::invalid_argument&) {
        return 0;
    }
    mp::console::Window w(3, 1 << 20);
    for (int i = 0; i < 2; ++i) {
        try {
            w.add(mp::console::parseReport(report, 1000));
        } catch (const std::runtime_error&) {
            break;
        }
    }
    std::string s = w.state(q);
    Poco::JSON::Parser p;
    try {
        p.parse(s);  // the page parses it: it must be JSON
    } catch (const Poco::Exception&) {
        __builtin_trap();
    }
    if (w.intervals() > 1 && w.heldBytes() > (1u << 20) * 2) {
        __builtin_trap();
    }
    return 0;
}
