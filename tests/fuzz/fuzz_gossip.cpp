// SPDX-License-Identifier: Apache-2.0
// Fuzz target: cluster-gossip's memberlist wire format. The same bytes go to every message
// decoder (as a body and as a whole UDP message, unwrapped through CRC, compound and compress),
// to LZW, to the keyring (a fixed key), to the stream parser with and without keys, and to serf's
// tags and Lamport times. What decodes must re-encode to something that decodes the same way.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "wire.hpp"

using namespace mp::gossip;

namespace {

void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

const Keyring& keyring() {
    static const Keyring k = [] {
        Keyring r;
        r.addBase64("uFu37q5BAkLbvwi9nOmdNBdSRHRAaMlVd58vOPVXT7g=");  // the captures' key
        return r;
    }();
    return k;
}

template <class T>
void roundTrip(const uint8_t* p, size_t n) {
    T m;
    if (!decode(p, n, m)) {
        return;
    }
    const Bytes again = encode(m);
    T back;
    check(again.size() > 1 && decode(again.data() + 1, again.size() - 1, back));
    check(encode(back) == again);
}

bool inside(const uint8_t* q, size_t len, const uint8_t* p, size_t n) {
    return q >= p && len <= n && q - p <= static_cast<std::ptrdiff_t>(n - len);
}

/// A whole UDP message after decryption, as memberlist's handleCommand takes it.
void udp(const uint8_t* p, size_t n, int depth) {
    if (n == 0 || depth > 4) {
        return;
    }
    const uint8_t* b = p + 1;
    const size_t bn = n - 1;
    switch (static_cast<MsgType>(p[0])) {
        case MsgType::HasCrc: {
            const uint8_t* in = nullptr;
            size_t len = 0;
            if (checkCrc(b, bn, in, len)) {
                check(in == b + 4 && len == bn - 4);
                udp(in, len, depth + 1);
            }
            break;
        }
        case MsgType::Compound: {
            std::vector<std::pair<const uint8_t*, size_t>> parts;
            size_t truncated = 0;
            if (splitCompound(b, bn, parts, truncated)) {
                check(parts.size() + truncated <= b[0]);
                for (const auto& part : parts) {
                    check(part.second > 0 && inside(part.first, part.second, b, bn));
                    udp(part.first, part.second, depth + 1);
                }
            }
            break;
        }
        case MsgType::Compress: {
            Bytes inner;
            if (decompressMsg(b, bn, inner, 1 << 16)) {
                check(!inner.empty() && inner.size() <= (1 << 16));
                const Bytes again = compressMsg(inner);
                Bytes back;
                check(decompressMsg(again.data() + 1, again.size() - 1, back, inner.size()));
                check(back == inner);
                udp(inner.data(), inner.size(), depth + 1);
            }
            break;
        }
        case MsgType::User: {
            uint64_t lt = 0;
            serfLTime(b, bn, lt);
            break;
        }
        default:
            break;
    }
}

void stream(const uint8_t* p, size_t n, const Keyring* keys) {
    StreamMsg m;
    std::string err;
    const Parse whole = parseStream(p, n, keys, 1 << 16, m, err);
    check(whole != Parse::Bad || !err.empty());
    if (whole == Parse::Ok && m.type == MsgType::PushPull) {
        check(m.pushPull.nodes.size() <= 4096);
        for (const PushNodeState& s : m.pushPull.nodes) {
            check(s.vsn.size() == 6 && (s.addr.size() == 4 || s.addr.size() == 16));
            // The members' bounds: what they accept is within memberlist's sizes.
            check(!withinLimits(s) ||
                  (s.name.size() <= kNameMaxSize && s.meta.size() <= kMetaMaxSize));
            check(unusableAddress(s.addr).empty() ==
                  (s.addr.size() == 4 && s.addr[0] != 0 && s.addr[0] < 224));
        }
        // What was parsed is a message that parses back the same.
        const Bytes again = encode(m.pushPull);
        StreamMsg back;
        check(parseStream(again.data(), again.size(), nullptr, again.size(), back, err) ==
              Parse::Ok);
        check(encode(back.pushPull) == again);
    }
    // Bytes that cannot begin a message stay refused whatever follows; a message stays one.
    for (size_t len : {n / 2, n > 0 ? n - 1 : 0}) {
        StreamMsg part;
        const Parse r = parseStream(p, len, keys, 1 << 16, part, err);
        if (r == Parse::Bad) {
            check(whole == Parse::Bad);
        }
        if (r == Parse::Ok) {
            check(whole == Parse::Ok);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // Message bodies, the input taken as a body and as a message (type byte first).
    const uint8_t* b = size > 0 ? data + 1 : data;
    const size_t bn = size > 0 ? size - 1 : 0;
    for (int whole = 0; whole < 2; ++whole) {
        const uint8_t* p = whole ? data : b;
        const size_t n = whole ? size : bn;
        roundTrip<Ping>(p, n);
        roundTrip<IndirectPing>(p, n);
        roundTrip<Ack>(p, n);
        roundTrip<Nack>(p, n);
        roundTrip<Alive>(p, n);
        roundTrip<Suspect>(p, n);
        roundTrip<Dead>(p, n);
        roundTrip<ErrResp>(p, n);
    }
    udp(data, size, 0);

    // LZW: what decompresses recompresses and comes back; anything compresses and comes back.
    Bytes out;
    if (lzwDecompress(data, size, out, 1 << 16)) {
        check(out.size() <= (1 << 16));
        const Bytes z = lzwCompress(out.data(), out.size());
        Bytes back;
        check(lzwDecompress(z.data(), z.size(), back, out.size()) && back == out);
    }
    const Bytes z = lzwCompress(data, size);
    check(lzwDecompress(z.data(), z.size(), out, size) && out == Bytes(data, data + size));

    // Encryption with the captures' key: a real datagram decrypts and is unwrapped.
    if (keyring().decryptUdp(data, size, out)) {
        udp(out.data(), out.size(), 0);
    }
    if (size >= 5) {
        keyring().decryptTcp(data, data + 5, size - 5, out);
    }

    stream(data, size, nullptr);
    stream(data, size, &keyring());

    // serf
    std::map<std::string, std::string> tags;
    const Bytes meta(data, data + size);
    if (decodeTags(meta, tags) && size > 0 && data[0] == 0xff && !tags.empty()) {
        std::map<std::string, std::string> back;
        check(decodeTags(encodeTags(tags), back) && back == tags);
    }
    uint64_t lt = 0;
    serfLTime(data, size, lt);
    return 0;
}
