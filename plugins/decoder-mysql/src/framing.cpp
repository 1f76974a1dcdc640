// SPDX-License-Identifier: Apache-2.0
#include "framing.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace mp::mysql {

namespace {
constexpr uint32_t kMaxWire = 0xffffff;
constexpr size_t kMaxCompressedFrame = 0xffffff + 7;
}  // namespace

void Framer::reset() {
    headerHave_ = 0;
    wireLeft_ = 0;
    inPacket_ = false;
    continues_ = false;
    payload_.clear();
    length_ = 0;
    cbuf_.clear();
}

bool Framer::feed(const uint8_t* data, size_t len, uint64_t ts, const Sink& sink) {
    return compressed_ ? feedCompressed(data, len, ts, sink) : feedPlain(data, len, ts, sink);
}

bool Framer::feedPlain(const uint8_t* data, size_t len, uint64_t ts, const Sink& sink) {
    size_t pos = 0;
    while (true) {
        // Fast path: a whole packet inside this chunk is handed over in place, without a copy.
        if (headerHave_ == 0 && !inPacket_ && len - pos >= 4) {
            uint32_t wl =
                data[pos] | (data[pos + 1] << 8) | (static_cast<uint32_t>(data[pos + 2]) << 16);
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
        }
        // else: a 0xffffff wire packet; the logical packet goes on in the next one.
    }
    return true;
}

bool Framer::feedCompressed(const uint8_t* data, size_t len, uint64_t ts, const Sink& sink) {
    size_t pos = 0;
    while (pos < len) {
        if (cbuf_.size() < 7) {
            size_t take = std::min<size_t>(7 - cbuf_.size(), len - pos);
            cbuf_.insert(cbuf_.end(), data + pos, data + pos + take);
            pos += take;
            if (cbuf_.size() < 7) {
                break;
            }
        }
        uint32_t clen = cbuf_[0] | (cbuf_[1] << 8) | (static_cast<uint32_t>(cbuf_[2]) << 16);
        size_t need = 7 + static_cast<size_t>(clen);
        if (need > kMaxCompressedFrame) {
            ++decompressErrors_;
            cbuf_.clear();
            return false;
        }
        size_t take = std::min(need - cbuf_.size(), len - pos);
        cbuf_.insert(cbuf_.end(), data + pos, data + pos + take);
        pos += take;
        if (cbuf_.size() < need) {
            break;
        }
        uint32_t ulen = cbuf_[4] | (cbuf_[5] << 8) | (static_cast<uint32_t>(cbuf_[6]) << 16);
        const uint8_t* body = cbuf_.data() + 7;
        if (ulen == 0) {
            // Stored: the body is plain framing.
            feedPlain(body, clen, ts, sink);
        } else {
            inflated_.resize(ulen);
            uLongf out = ulen;
            int rc = uncompress(inflated_.data(), &out, body, clen);
            if (rc != Z_OK || out != ulen) {
                ++decompressErrors_;
                cbuf_.clear();
                return false;
            }
            feedPlain(inflated_.data(), out, ts, sink);
        }
        cbuf_.clear();
    }
    return true;
}

}  // namespace mp::mysql
