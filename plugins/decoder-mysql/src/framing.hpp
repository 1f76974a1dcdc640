// SPDX-License-Identifier: Apache-2.0
// MySQL packet framing of one direction: 4-byte headers, logical packets of 16 MiB and more
// made of several wire packets, and the compressed protocol (zlib or stored) underneath.
// Bounded: of a logical packet, at most `maxKeep` payload bytes are kept (its full length is
// still known), so a 1 GiB row costs nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mp::mysql {

/// One logical MySQL packet.
struct Packet {
    uint8_t seq = 0;                // sequence id of its first wire packet
    uint64_t length = 0;            // full payload length
    const uint8_t* data = nullptr;  // the first min(length, maxKeep) bytes
    size_t kept = 0;
    uint64_t ts = 0;       // time of the data that completed it
    uint64_t firstTs = 0;  // time of the data that started it
};

class Framer {
  public:
    using Sink = std::function<void(const Packet&)>;

    explicit Framer(size_t maxKeep = 1 << 20) : maxKeep_(maxKeep) {}

    /// Switch to the compressed protocol (after the handshake, when negotiated).
    void setCompressed(bool on) { compressed_ = on; }
    bool compressed() const { return compressed_; }

    /// Feeds stream bytes; calls `sink` for each complete logical packet.
    /// Returns false when the bytes cannot be MySQL framing (corrupt compression): the caller
    /// resynchronises.
    bool feed(const uint8_t* data, size_t len, uint64_t ts, const Sink& sink);
    /// Forgets any partial packet (after a gap).
    void reset();

    uint64_t decompressErrors() const { return decompressErrors_; }

  private:
    bool feedPlain(const uint8_t* data, size_t len, uint64_t ts, const Sink& sink);
    bool feedCompressed(const uint8_t* data, size_t len, uint64_t ts, const Sink& sink);

    size_t maxKeep_;
    bool compressed_ = false;
    // Plain framing state.
    uint8_t header_[4] = {0, 0, 0, 0};
    size_t headerHave_ = 0;
    uint32_t wireLeft_ = 0;  // payload bytes left in the current wire packet
    bool inPacket_ = false;
    bool continues_ = false;        // the current wire packet is 0xffffff long: more follow
    std::vector<uint8_t> payload_;  // kept prefix of the logical packet
    uint64_t length_ = 0;
    uint8_t seq_ = 0;
    uint64_t firstTs_ = 0;
    uint64_t headerTs_ = 0;
    // Compressed framing state.
    std::vector<uint8_t> cbuf_;  // bytes of the current compressed frame (header + body)
    std::vector<uint8_t> inflated_;
    uint64_t decompressErrors_ = 0;
};

}  // namespace mp::mysql
