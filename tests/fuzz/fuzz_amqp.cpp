// SPDX-License-Identifier: Apache-2.0
// Fuzz target: sink-amqp's configuration parsers, the broker URL and the routing-key template.
#include <cstddef>
#include <cstdint>
#include <mp/amqp_url.hpp>
#include <string>

#include "routing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    mp::amqp::Url u;
    std::string why;
    if (mp::amqp::parseUrl(text, u, why) && (u.host.empty() || u.vhost.empty())) {
        __builtin_trap();
    }
    auto t = mp::amqp::RoutingTemplate::parse(text, why);
    if (t) {
        mp::amqp::Values v{};
        v.fill(text);
        std::string key = t->render(v);
        // Without placeholders or braces, the key is the text itself.
        if (key.size() > 255 || (text.find_first_of("{}") == std::string::npos && key != text)) {
            __builtin_trap();
        }
    }
    return 0;
}
