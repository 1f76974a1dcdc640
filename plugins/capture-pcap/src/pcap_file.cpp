// SPDX-License-Identifier: Apache-2.0
#include "pcap_file.hpp"

#include <algorithm>
#include <cstring>

namespace mp::capture {

namespace {
constexpr uint32_t kMicro = 0xA1B2C3D4;
constexpr uint32_t kNano = 0xA1B23C4D;
constexpr uint32_t kMaxRecord = 16 * 1024 * 1024;  // larger than any snapshot length

uint32_t bswap(uint32_t v) { return __builtin_bswap32(v); }
}  // namespace

uint32_t ClassicPcapReader::u32(size_t at) const {
    uint32_t v = 0;
    std::memcpy(&v, base_ + at, sizeof v);
    return swapped_ ? bswap(v) : v;
}

bool ClassicPcapReader::open(const uint8_t* base, size_t size) {
    base_ = base;
    size_ = size;
    if (size < 24) {
        return false;
    }
    uint32_t magic = 0;
    std::memcpy(&magic, base, sizeof magic);
    if (magic == kMicro || magic == kNano) {
        swapped_ = false;
    } else if (bswap(magic) == kMicro || bswap(magic) == kNano) {
        swapped_ = true;
        magic = bswap(magic);
    } else {
        return false;
    }
    nano_ = magic == kNano;
    uint32_t version = u32(4);
    uint16_t major = static_cast<uint16_t>(swapped_ ? (version >> 16) : (version & 0xffff));
    if (major != 2) {
        return false;
    }
    snaplen_ = u32(16);
    link_ = u32(20) & 0x0fffffff;  // the high bits carry FCS information
    off_ = 24;
    return true;
}

ClassicPcapReader::Next ClassicPcapReader::next(PcapRecord& r) {
    if (off_ == size_) {
        return Next::End;
    }
    if (size_ - off_ < 16) {
        error_ = "truncated record header at offset " + std::to_string(off_);
        return Next::Corrupt;
    }
    uint32_t sec = u32(off_);
    uint32_t frac = u32(off_ + 4);
    uint32_t incl = u32(off_ + 8);
    uint32_t orig = u32(off_ + 12);
    if (incl > kMaxRecord || (!nano_ && frac >= 1000000) || (nano_ && frac >= 1000000000)) {
        error_ = "corrupt record header at offset " + std::to_string(off_);
        return Next::Corrupt;
    }
    if (size_ - off_ - 16 < incl) {
        error_ = "truncated record at offset " + std::to_string(off_);
        return Next::Corrupt;
    }
    r.tsNs = static_cast<uint64_t>(sec) * 1000000000ULL +
             static_cast<uint64_t>(nano_ ? frac : frac * 1000ULL);
    r.caplen = incl;
    r.len = orig < incl ? incl : orig;
    r.data = base_ + off_ + 16;
    off_ += 16 + static_cast<size_t>(incl);
    // The next record header, and the stream further on: the page and cache-line misses of a
    // mapped file otherwise stall every record (hardware prefetch stops at page boundaries).
    __builtin_prefetch(base_ + std::min(off_, size_ - 1));
    __builtin_prefetch(base_ + std::min(off_ + 4096, size_ - 1));
    return Next::Packet;
}

}  // namespace mp::capture
