// SPDX-License-Identifier: Apache-2.0
// Fuzz target: "host:port" (libs/net), read from /cluster/join?addr=, pusher servers and gossip
// notices; and the client websocket message assembler (libs/push) on frames made of the bytes.
#include <Poco/Net/WebSocket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mp/hostport.hpp>
#include <mp/ws_client.hpp>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    for (auto kind : {mp::net::HostKind::Any, mp::net::HostKind::Ip, mp::net::HostKind::Ipv4}) {
        auto hp = mp::net::parseHostPort(text, kind);
        if (!hp) {
            continue;
        }
        // A parsed address has a port and a host, and reads back as itself.
        auto again = mp::net::parseHostPort(hp->text(), kind);
        if (hp->port == 0 || hp->host.empty() || !again || again->host != hp->host ||
            again->port != hp->port) {
            __builtin_trap();
        }
    }
    (void)mp::net::hostOf(text);

    // Frames: each input byte picks an opcode and FIN; the next few bytes are the payload.
    const size_t cap = 64;
    mp::push::MessageAssembler m(cap);
    static const int ops[] = {Poco::Net::WebSocket::FRAME_OP_CONT,
                              Poco::Net::WebSocket::FRAME_OP_TEXT,
                              Poco::Net::WebSocket::FRAME_OP_BINARY, 3};
    for (size_t i = 0; i < size;) {
        uint8_t c = data[i++];
        size_t n = std::min<size_t>(c >> 3, size - i);
        mp::push::ClientFrame f{mp::push::ClientFrame::Kind::Data, ops[c & 3], (c & 4) != 0,
                                std::string_view(reinterpret_cast<const char*>(data + i), n)};
        i += n;
        auto r = m.add(f);
        if (r == mp::push::MessageAssembler::Result::Complete && m.take().size() > cap) {
            __builtin_trap();  // never more than the cap
        }
        if (r == mp::push::MessageAssembler::Result::TooBig ||
            r == mp::push::MessageAssembler::Result::Protocol) {
            m = mp::push::MessageAssembler(cap);  // the connection would be dropped
        }
    }
    return 0;
}
