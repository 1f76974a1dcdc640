// SPDX-License-Identifier: Apache-2.0
// MySQL packet framing of one direction: 4-byte headers, logical packets of 16 MiB and more
// made of several wire packets, and the compressed protocol (zlib or stored) underneath.
// Bounded by bytes: of a logical packet, at most `maxKeep` payload bytes are kept (its full
// length is still known), so a 1 GiB row costs nothing, and that buffer is released after a
// packet larger than kKeepRetained; a compressed frame is inflated as its bytes arrive, in
// pieces of kInflatePiece bytes, so it is never held whole (an inflater lives only inside a
// frame: see Framer::heldBytes).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
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

/// Where a run of result-set rows is counted when the framer skips it without packets: set by
/// the session while its current response is in its rows (null counters: off).
struct RowRun {
    uint64_t* rows = nullptr;
    uint64_t* bytes = nullptr;    // wire bytes, headers included
    uint64_t* packets = nullptr;  // packets seen
};

class Framer {
  public:
    explicit Framer(size_t maxKeep = 1 << 20);
    ~Framer();
    Framer(Framer&&) noexcept;
    Framer& operator=(Framer&&) noexcept;

    /// Rows arrive by the hundred: while `run->rows` is set, whole packets that can only be
    /// rows (not empty, first byte below 0xfe, under 16 MiB) are counted there in one tight
    /// loop instead of being handed over one by one. Anything else goes to the sink as usual.
    void setRowRun(const RowRun* run) { rowRun_ = run; }

    /// Switch to the compressed protocol (after the handshake, when negotiated).
    void setCompressed(bool on) { compressed_ = on; }
    bool compressed() const { return compressed_; }

    /// Feeds stream bytes; calls `sink` for each complete logical packet.
    /// Returns false when the bytes cannot be MySQL framing (corrupt compression): the caller
    /// resynchronises.
    /// `sink` is any callable taking `const Packet&` (inlined: it runs once per packet).
    template <class Sink>
    bool feed(const uint8_t* data, size_t len, uint64_t ts, Sink&& sink) {
        return compressed_ ? feedCompressed(data, len, ts, sink) : feedPlain(data, len, ts, sink);
    }
    /// Forgets any partial packet (after a gap) and releases its buffers.
    void reset();

    /// Compressed frames given up: they did not inflate to the length their header gave.
    uint64_t decompressErrors() const { return decompressErrors_; }
    /// Bytes this framer holds now (buffers' capacities, the inflater while inside a frame):
    /// at most maxKeep + kInflaterBytes, and kKeepRetained between packets.
    size_t heldBytes() const;

    /// A kept prefix buffer larger than this is released once its packet is complete.
    static constexpr size_t kKeepRetained = 64 * 1024;
    /// Inflated bytes are handed to the packet framing in pieces of this size.
    static constexpr size_t kInflatePiece = 16 * 1024;
    /// What an inflater takes: zlib's state and 32 KiB window, and the piece buffer.
    static constexpr size_t kInflaterBytes = 7168 + 32768 + kInflatePiece;

  private:
    static constexpr uint32_t kMaxWire = 0xffffff;
    struct Inflater;
    /// The 3-byte little-endian length at p (4 bytes must be readable there).
    static uint32_t le24(const uint8_t* p) {
        if constexpr (std::endian::native == std::endian::little) {
            uint32_t w;
            std::memcpy(&w, p, sizeof w);
            return w & kMaxWire;
        } else {
            return p[0] | (p[1] << 8) | (static_cast<uint32_t>(p[2]) << 16);
        }
    }

    template <class Sink>
    bool feedPlain(const uint8_t* data, size_t len, uint64_t ts, Sink& sink);
    template <class Sink>
    bool feedCompressed(const uint8_t* data, size_t len, uint64_t ts, Sink& sink);
    /// A compressed frame's header is complete: prepares its body. False: it cannot inflate.
    bool beginFrame();
    /// The frame's body is complete. False (counted): it did not inflate to its length.
    bool endFrame();
    /// Inflates the next piece of the frame from `*in` (advanced): its bytes, or null when
    /// no more come from this input (`ok` false: the frame is corrupt, counted).
    const uint8_t* inflatePiece(const uint8_t*& in, size_t& inLen, size_t& outLen, bool& ok);
    void releaseKept();

    size_t maxKeep_;
    const RowRun* rowRun_ = nullptr;
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
    uint8_t cheader_[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 7 used; 8 so le24 can read at 4
    size_t cheaderHave_ = 0;
    uint32_t cleft_ = 0;  // body bytes of the current frame still to come
    uint32_t ulen_ = 0;   // its uncompressed length (0: stored, the body is plain framing)
    std::unique_ptr<Inflater> inflater_;  // only inside a zlib frame
    uint64_t decompressErrors_ = 0;
};

template <class Sink>
bool Framer::feedPlain(const uint8_t* data, size_t len, uint64_t ts, Sink& sink) {
    size_t pos = 0;
    while (true) {
        // Fastest path: a run of rows, counted without a packet each.
        if (rowRun_ != nullptr && rowRun_->rows != nullptr && headerHave_ == 0 && !inPacket_) {
            // A row is a whole packet here, 1 to 0xfffffe bytes long, whose first byte is not
            // 0xfe or 0xff (EOF, OK or ERR, or a long length-encoded value: the packet path
            // decides those). Its bytes are the distance covered.
            const uint8_t* p = data + pos;
            const uint8_t* const end = data + len;
            uint64_t rows = 0;
            while (end - p >= 5) {
                const uint32_t wl = le24(p);
                if (wl - 1 >= kMaxWire - 1 || static_cast<size_t>(end - p) - 4 < wl ||
                    p[4] >= 0xfe) {
                    break;
                }
                ++rows;
                p += 4 + static_cast<size_t>(wl);
            }
            *rowRun_->rows += rows;
            *rowRun_->bytes += static_cast<uint64_t>(p - (data + pos));
            *rowRun_->packets += rows;
            pos = static_cast<size_t>(p - data);
        }
        // Fast path: a whole packet inside this chunk is handed over in place, without a copy.
        if (headerHave_ == 0 && !inPacket_ && len - pos >= 4) {
            const uint32_t wl = le24(data + pos);
            if (wl != kMaxWire && len - pos - 4 >= wl) {
                Packet p;
                p.seq = data[pos + 3];
                p.length = wl;
                p.data = data + pos + 4;
                p.kept = std::min<size_t>(wl, maxKeep_);
                p.ts = ts;
                p.firstTs = ts;
                pos += 4 + static_cast<size_t>(wl);
                sink(p);
                continue;
            }
        }
        if (headerHave_ < 4) {
            if (pos >= len) {
                break;
            }
            if (headerHave_ == 0 && !inPacket_) {
                headerTs_ = ts;
            }
            size_t take = std::min<size_t>(4 - headerHave_, len - pos);
            std::memcpy(header_ + headerHave_, data + pos, take);
            headerHave_ += take;
            pos += take;
            if (headerHave_ < 4) {
                break;
            }
            uint32_t wl =
                header_[0] | (header_[1] << 8) | (static_cast<uint32_t>(header_[2]) << 16);
            if (!inPacket_) {
                inPacket_ = true;
                seq_ = header_[3];
                firstTs_ = headerTs_;
                length_ = 0;
                payload_.clear();
                // Exactly what will be kept: growth by doubling could take twice maxKeep.
                payload_.reserve(std::min<size_t>(wl, maxKeep_));
            }
            wireLeft_ = wl;
            continues_ = wl == kMaxWire;
        }
        size_t take = std::min<size_t>(wireLeft_, len - pos);
        if (take > 0) {
            size_t room = maxKeep_ > payload_.size() ? maxKeep_ - payload_.size() : 0;
            size_t keep = std::min(room, take);
            payload_.insert(payload_.end(), data + pos, data + pos + keep);
            length_ += take;
            wireLeft_ -= static_cast<uint32_t>(take);
            pos += take;
        }
        if (wireLeft_ > 0) {
            break;  // the rest of this wire packet comes with later data
        }
        headerHave_ = 0;
        if (!continues_) {
            Packet p;
            p.seq = seq_;
            p.length = length_;
            p.data = payload_.data();
            p.kept = payload_.size();
            p.ts = ts;
            p.firstTs = firstTs_;
            inPacket_ = false;
            sink(p);
            if (payload_.capacity() > kKeepRetained) {
                releaseKept();  // a large packet: do not keep its buffer for every later one
            }
        }
        // else: a 0xffffff wire packet; the logical packet goes on in the next one.
    }
    return true;
}

template <class Sink>
bool Framer::feedCompressed(const uint8_t* data, size_t len, uint64_t ts, Sink& sink) {
    // Frames: a 7-byte header (compressed length, sequence, uncompressed length), then the
    // body, handed on as it arrives: nothing of a frame is held but the inflater's state.
    size_t pos = 0;
    while (pos < len) {
        if (cheaderHave_ < 7) {
            size_t take = std::min<size_t>(7 - cheaderHave_, len - pos);
            std::memcpy(cheader_ + cheaderHave_, data + pos, take);
            cheaderHave_ += take;
            pos += take;
            if (cheaderHave_ < 7) {
                break;
            }
            if (!beginFrame()) {
                return false;
            }
        }
        const size_t take = std::min<size_t>(cleft_, len - pos);
        const uint8_t* in = data + pos;
        pos += take;
        cleft_ -= static_cast<uint32_t>(take);
        if (ulen_ == 0) {
            feedPlain(in, take, ts, sink);  // stored: the body is plain framing
        } else {
            size_t inLen = take;
            size_t outLen = 0;
            bool ok = true;
            while (const uint8_t* out = inflatePiece(in, inLen, outLen, ok)) {
                feedPlain(out, outLen, ts, sink);
            }
            if (!ok) {
                return false;
            }
        }
        if (cleft_ == 0 && !endFrame()) {
            return false;
        }
    }
    return true;
}

}  // namespace mp::mysql
