// SPDX-License-Identifier: Apache-2.0
#include "framing.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace mp::mysql {

struct Framer::Inflater {
    z_stream zs{};
    bool ended = false;     // zlib saw the end of the stream
    uint32_t produced = 0;  // bytes inflated so far (<= the frame's uncompressed length)
    uint8_t piece[kInflatePiece];
    Inflater() = default;
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;
    ~Inflater() { inflateEnd(&zs); }
};

Framer::Framer(size_t maxKeep) : maxKeep_(maxKeep) {}
Framer::~Framer() = default;
Framer::Framer(Framer&&) noexcept = default;
Framer& Framer::operator=(Framer&&) noexcept = default;

void Framer::releaseKept() { std::vector<uint8_t>().swap(payload_); }

void Framer::reset() {
    headerHave_ = 0;
    wireLeft_ = 0;
    inPacket_ = false;
    continues_ = false;
    releaseKept();
    length_ = 0;
    cheaderHave_ = 0;
    cleft_ = 0;
    ulen_ = 0;
    inflater_.reset();
}

size_t Framer::heldBytes() const {
    return payload_.capacity() + (inflater_ != nullptr ? kInflaterBytes : 0);
}

bool Framer::beginFrame() {
    cleft_ = le24(cheader_);
    ulen_ = le24(cheader_ + 4);
    if (ulen_ == 0) {
        return true;
    }
    inflater_ = std::make_unique<Inflater>();
    if (inflateInit(&inflater_->zs) != Z_OK) {
        ++decompressErrors_;
        reset();
        return false;
    }
    return true;
}

bool Framer::endFrame() {
    bool ok = ulen_ == 0 || (inflater_->ended && inflater_->produced == ulen_);
    inflater_.reset();  // released between frames
    cheaderHave_ = 0;
    if (!ok) {
        ++decompressErrors_;
        reset();
    }
    return ok;
}

const uint8_t* Framer::inflatePiece(const uint8_t*& in, size_t& inLen, size_t& outLen, bool& ok) {
    Inflater& f = *inflater_;
    if (f.ended) {
        // Bytes after the end of the zlib stream, inside the frame: ignored (as uncompress()
        // ignores them).
        in += inLen;
        inLen = 0;
        return nullptr;
    }
    // Room for one byte more than the frame may still produce: a frame that inflates past its
    // length is caught at that byte, and zlib always has room to read its trailer.
    const size_t room = std::min<size_t>(kInflatePiece, ulen_ - f.produced + 1);
    f.zs.next_in = const_cast<Bytef*>(in);
    f.zs.avail_in = static_cast<uInt>(inLen);
    f.zs.next_out = f.piece;
    f.zs.avail_out = static_cast<uInt>(room);
    const int rc = ::inflate(&f.zs, Z_NO_FLUSH);
    const size_t used = inLen - f.zs.avail_in;
    in += used;
    inLen -= used;
    outLen = room - f.zs.avail_out;
    f.produced += static_cast<uint32_t>(outLen);
    f.ended = rc == Z_STREAM_END;
    if ((rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) || f.produced > ulen_) {
        ++decompressErrors_;
        reset();
        ok = false;
        return nullptr;
    }
    if (outLen == 0) {
        return nullptr;  // zlib needs more input (or took the trailer): next data
    }
    return f.piece;
}

}  // namespace mp::mysql
