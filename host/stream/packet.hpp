// SPDX-License-Identifier: Apache-2.0
// Link layer -> IPv4/IPv6 -> TCP, bounds-checked, on one captured frame. No allocation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mp::host {

/// One TCP segment as seen in a frame. Pointers refer into the frame.
struct Segment {
    uint64_t ts = 0;
    uint8_t ipVersion = 0;
    uint8_t flags = 0;  // TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10)
    uint16_t srcPort = 0;
    uint16_t dstPort = 0;
    uint8_t srcIp[16] = {};  // IPv4 in the first 4 bytes
    uint8_t dstIp[16] = {};
    uint32_t seq = 0;
    uint32_t ack = 0;
    const uint8_t* payload = nullptr;
    uint32_t captured = 0;  // payload bytes present in the frame
    uint32_t length = 0;    // payload bytes on the wire (IP total length); >= captured
};

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;

enum class ParseResult {
    Ok,
    UnsupportedLink,  // a link type this host does not parse
    NotIp,            // ARP, LLDP, ...
    NotTcp,           // UDP, ICMP, ESP, ...
    Fragment,         // IP fragments are counted and dropped (not reassembled)
    Truncated,        // headers cut short by the snapshot length
    Malformed,        // lengths or versions that cannot be right
};

/// Parses a frame of pcap link type `link`. Only `Ok` fills `out` completely.
ParseResult parseFrame(uint32_t link, const uint8_t* data, size_t caplen, Segment& out);

}  // namespace mp::host
