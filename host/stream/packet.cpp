// SPDX-License-Identifier: Apache-2.0
#include "stream/packet.hpp"

#include <cstring>

namespace mp::host {

namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86DD;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88A8;
constexpr uint16_t kEtherQinQOld = 0x9100;

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t be32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

ParseResult parseTcp(const uint8_t* p, size_t avail, size_t wire, Segment& out) {
    // `avail`: bytes of the IP payload present; `wire`: its length per the IP header.
    if (wire < 20) {
        return ParseResult::Malformed;
    }
    if (avail < 20) {
        return ParseResult::Truncated;
    }
    size_t hlen = static_cast<size_t>(p[12] >> 4) * 4;
    if (hlen < 20 || hlen > wire) {
        return ParseResult::Malformed;
    }
    if (avail < hlen) {
        return ParseResult::Truncated;
    }
    out.srcPort = be16(p);
    out.dstPort = be16(p + 2);
    out.seq = be32(p + 4);
    out.ack = be32(p + 8);
    out.flags = p[13];
    out.payload = p + hlen;
    out.length = static_cast<uint32_t>(wire - hlen);
    out.captured = static_cast<uint32_t>(avail - hlen < wire - hlen ? avail - hlen : wire - hlen);
    return ParseResult::Ok;
}

ParseResult parseIpv4(const uint8_t* p, size_t caplen, Segment& out) {
    if (caplen < 20) {
        return ParseResult::Truncated;
    }
    if ((p[0] >> 4) != 4) {
        return ParseResult::Malformed;
    }
    size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
    size_t total = be16(p + 2);
    if (ihl < 20 || total < ihl) {
        return ParseResult::Malformed;
    }
    if (caplen < ihl) {
        return ParseResult::Truncated;
    }
    uint16_t frag = be16(p + 6);
    if ((frag & 0x3fff) != 0) {  // MF set or a non-zero offset
        return ParseResult::Fragment;
    }
    if (p[9] != 6) {
        return ParseResult::NotTcp;
    }
    out.ipVersion = 4;
    std::memset(out.srcIp, 0, sizeof out.srcIp);
    std::memset(out.dstIp, 0, sizeof out.dstIp);
    std::memcpy(out.srcIp, p + 12, 4);
    std::memcpy(out.dstIp, p + 16, 4);
    // The IP total length bounds the payload: Ethernet pads short frames.
    size_t avail = (caplen < total ? caplen : total) - ihl;
    return parseTcp(p + ihl, avail, total - ihl, out);
}

ParseResult parseIpv6(const uint8_t* p, size_t caplen, Segment& out) {
    if (caplen < 40) {
        return ParseResult::Truncated;
    }
    if ((p[0] >> 4) != 6) {
        return ParseResult::Malformed;
    }
    size_t payloadLen = be16(p + 4);
    uint8_t next = p[6];
    std::memcpy(out.srcIp, p + 8, 16);
    std::memcpy(out.dstIp, p + 24, 16);
    out.ipVersion = 6;
    size_t off = 40;
    size_t end = 40 + payloadLen;  // jumbograms (payload length 0) are not supported
    // Extension headers, bounded: at most 8 of them.
    for (int i = 0; i < 8; ++i) {
        switch (next) {
            case 6: {
                if (off > end) {
                    return ParseResult::Malformed;
                }
                size_t avail = caplen > off ? (caplen < end ? caplen : end) - off : 0;
                if (caplen < off) {
                    return ParseResult::Truncated;
                }
                return parseTcp(p + off, avail, end - off, out);
            }
            case 0:    // hop-by-hop
            case 43:   // routing
            case 60:   // destination options
            case 135:  // mobility
            {
                if (caplen < off + 8) {
                    return ParseResult::Truncated;
                }
                next = p[off];
                off += (static_cast<size_t>(p[off + 1]) + 1) * 8;
                break;
            }
            case 51: {  // authentication header
                if (caplen < off + 8) {
                    return ParseResult::Truncated;
                }
                next = p[off];
                off += (static_cast<size_t>(p[off + 1]) + 2) * 4;
                break;
            }
            case 44:
                return ParseResult::Fragment;
            default:
                return ParseResult::NotTcp;
        }
        if (off > end) {
            return ParseResult::Malformed;
        }
    }
    return ParseResult::Malformed;
}

ParseResult parseEtherType(uint16_t type, const uint8_t* p, size_t caplen, Segment& out) {
    if (type == kEtherIpv4) {
        return parseIpv4(p, caplen, out);
    }
    if (type == kEtherIpv6) {
        return parseIpv6(p, caplen, out);
    }
    return ParseResult::NotIp;
}

ParseResult parseByVersion(const uint8_t* p, size_t caplen, Segment& out) {
    if (caplen < 1) {
        return ParseResult::Truncated;
    }
    switch (p[0] >> 4) {
        case 4:
            return parseIpv4(p, caplen, out);
        case 6:
            return parseIpv6(p, caplen, out);
        default:
            return ParseResult::NotIp;
    }
}

}  // namespace

ParseResult parseFrame(uint32_t link, const uint8_t* data, size_t caplen, Segment& out) {
    switch (link) {
        case 1: {  // Ethernet, with any number (<= 4) of 802.1Q / QinQ tags
            if (caplen < 14) {
                return ParseResult::Truncated;
            }
            size_t off = 12;
            uint16_t type = be16(data + off);
            for (int tags = 0;
                 tags < 4 && (type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQOld);
                 ++tags) {
                off += 4;
                if (caplen < off + 2) {
                    return ParseResult::Truncated;
                }
                type = be16(data + off);
            }
            off += 2;
            return parseEtherType(type, data + off, caplen - off, out);
        }
        case 113: {  // Linux cooked v1: protocol at 14
            if (caplen < 16) {
                return ParseResult::Truncated;
            }
            return parseEtherType(be16(data + 14), data + 16, caplen - 16, out);
        }
        case 276: {  // Linux cooked v2: protocol at 0, header 20 bytes
            if (caplen < 20) {
                return ParseResult::Truncated;
            }
            return parseEtherType(be16(data), data + 20, caplen - 20, out);
        }
        case 0:      // BSD loopback: address family in the capturing host's byte order
        case 108: {  // OpenBSD loopback: network byte order
            if (caplen < 4) {
                return ParseResult::Truncated;
            }
            uint32_t le = static_cast<uint32_t>(data[0]) | (static_cast<uint32_t>(data[1]) << 8) |
                          (static_cast<uint32_t>(data[2]) << 16) |
                          (static_cast<uint32_t>(data[3]) << 24);
            uint32_t be = be32(data);
            auto isInet = [](uint32_t af) { return af == 2; };
            auto isInet6 = [](uint32_t af) { return af == 10 || af == 24 || af == 28 || af == 30; };
            if (isInet(le) || isInet(be)) {
                return parseIpv4(data + 4, caplen - 4, out);
            }
            if (isInet6(le) || isInet6(be)) {
                return parseIpv6(data + 4, caplen - 4, out);
            }
            return ParseResult::NotIp;
        }
        case 101:  // raw IP
        case 12:   // raw IP on some BSDs
        case 14:   // raw IP on OpenBSD
            return parseByVersion(data, caplen, out);
        case 228:  // raw IPv4
            return parseIpv4(data, caplen, out);
        case 229:  // raw IPv6
            return parseIpv6(data, caplen, out);
        default:
            return ParseResult::UnsupportedLink;
    }
}

}  // namespace mp::host
