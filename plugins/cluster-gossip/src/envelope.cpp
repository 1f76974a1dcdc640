// SPDX-License-Identifier: Apache-2.0
// The envelopes around memberlist messages (wire.hpp): compound messages, the CRC of hasCrc
// and the compress message (LZW inside msgpack).
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "msgpack_io.hpp"

namespace mp::gossip {

using namespace detail;  // the wire's own msgpack helpers (msgpack_io.hpp)

// -------------------------------------------------------------------------------- compound, CRC

Bytes compound(const std::vector<Bytes>& parts) {
    if (parts.size() > 255) {
        return {};
    }
    Bytes out = withType(MsgType::Compound);
    out.push_back(static_cast<uint8_t>(parts.size()));
    for (const Bytes& part : parts) {
        if (part.empty() || part.size() > 0xffff) {
            return {};
        }
        out.push_back(static_cast<uint8_t>(part.size() >> 8));
        out.push_back(static_cast<uint8_t>(part.size()));
    }
    for (const Bytes& part : parts) {
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
}

bool splitCompound(const uint8_t* p, size_t n,
                   std::vector<std::pair<const uint8_t*, size_t>>& parts, size_t& truncated) {
    parts.clear();
    truncated = 0;
    if (p == nullptr || n < 1) {
        return false;
    }
    const size_t count = p[0];
    if (n - 1 < count * 2) {
        return false;
    }
    size_t off = 1 + count * 2;
    for (size_t i = 0; i < count; ++i) {
        const size_t len = static_cast<size_t>(p[1 + 2 * i]) << 8 | p[2 + 2 * i];
        if (n - off < len) {
            truncated = count - i;
            break;
        }
        if (len > 0) {  // Go would index an empty part; it can only be dropped
            parts.emplace_back(p + off, len);
        }
        off += len;
    }
    return true;
}

Bytes withCrc(const Bytes& msg) {
    Bytes out(5);
    out[0] = static_cast<uint8_t>(MsgType::HasCrc);
    putBe32(out.data() + 1, static_cast<uint32_t>(crc32_z(0, msg.data(), msg.size())));
    out.insert(out.end(), msg.begin(), msg.end());
    return out;
}

bool checkCrc(const uint8_t* p, size_t n, const uint8_t*& inner, size_t& innerLen) {
    if (p == nullptr || n < 5) {
        return false;
    }
    if (getBe32(p) != static_cast<uint32_t>(crc32_z(0, p + 4, n - 4))) {
        return false;
    }
    inner = p + 4;
    innerLen = n - 4;
    return true;
}

Bytes compressMsg(const Bytes& msg) {
    Bytes buf = lzwCompress(msg.data(), msg.size());
    Bytes out = withType(MsgType::Compress);
    Writer w(out);
    w.map(2);
    w.str("Algo");
    w.uint(0);
    w.str("Buf");
    w.str(buf.data(), buf.size());
    return out;
}

bool decompressMsg(const uint8_t* p, size_t n, Bytes& out, size_t maxOut) {
    try {
        msgpack::object_handle oh;
        size_t off = 0;
        if (unpackAt(p, n, off, oh) != Got::Ok) {
            return false;
        }
        uint64_t algo = 0;
        const uint8_t* buf = nullptr;
        size_t len = 0;
        if (!forFields(oh.get(), {"Algo", "Buf"},
                       [&](std::string_view k, const Obj& v) {
                           if (k == "Algo") return getUint(v, INT64_MAX, algo);
                           if (k == "Buf") return getView(v, buf, len);
                           return true;
                       }) ||
            algo != 0) {
            return false;
        }
        Bytes res;
        if (!lzwDecompress(buf, len, res, maxOut) || res.empty()) {
            return false;
        }
        out = std::move(res);
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace mp::gossip
