// SPDX-License-Identifier: Apache-2.0
#include "pcap_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
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

bool ClassicPcapReader::header() {
    if (size_ < 24) {
        return false;
    }
    uint32_t magic = 0;
    std::memcpy(&magic, base_, sizeof magic);
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

bool ClassicPcapReader::open(const uint8_t* base, size_t size) {
    fd_ = -1;
    base_ = base;
    size_ = size;
    off_ = 0;
    fileBase_ = 0;
    return header();
}

bool ClassicPcapReader::openFd(int fd, size_t bufferBytes) {
    fd_ = fd;
    buf_.assign(std::max<size_t>(bufferBytes, 64), 0);
    base_ = buf_.data();
    size_ = off_ = fileBase_ = 0;
    eof_ = false;
    error_.clear();
    return refill() && header();
}

bool ClassicPcapReader::complete() const {
    size_t avail = size_ - off_;
    if (avail < 16) {
        return false;
    }
    uint32_t incl = u32(off_ + 8);
    return incl > kMaxRecord || avail - 16 >= incl;  // too large: next() says it is corrupt
}

bool ClassicPcapReader::needsRefill() const { return fd_ >= 0 && !eof_ && !complete(); }

// Moves the unread bytes to the front and reads until the buffer is full or the file ends; the
// buffer grows first when the next record is larger than it.
bool ClassicPcapReader::refill() {
    size_t keep = size_ - off_;
    if (off_ > 0 && keep > 0) {
        std::memmove(buf_.data(), buf_.data() + off_, keep);
    }
    fileBase_ += off_;
    off_ = 0;
    size_ = keep;
    if (keep >= 16) {
        size_t need = 16 + static_cast<size_t>(std::min(u32(8), kMaxRecord));
        if (need > buf_.size()) {
            buf_.resize(need);
            base_ = buf_.data();
        }
    }
    while (size_ < buf_.size()) {
        ssize_t k = ::read(fd_, buf_.data() + size_, buf_.size() - size_);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            error_ = "read error at offset " + std::to_string(fileBase_ + size_) + ": " +
                     std::strerror(errno);
            return false;
        }
        if (k == 0) {
            eof_ = true;
            break;
        }
        size_ += static_cast<size_t>(k);
    }
    return true;
}

bool ClassicPcapReader::rewind() {
    if (fd_ < 0) {
        off_ = 24;
        return true;
    }
    if (::lseek(fd_, 0, SEEK_SET) != 0) {
        error_ = std::string("cannot read the file again: ") + std::strerror(errno);
        return false;
    }
    size_ = off_ = fileBase_ = 0;
    eof_ = false;
    return refill() && header();
}

ClassicPcapReader::Next ClassicPcapReader::next(PcapRecord& r) {
    while (fd_ >= 0 && !eof_ && !complete()) {  // each refill reads more or grows the buffer
        if (!refill()) {
            return Next::Corrupt;
        }
    }
    if (off_ == size_) {
        return Next::End;
    }
    if (size_ - off_ < 16) {
        error_ = "truncated record header at offset " + std::to_string(offset());
        return Next::Corrupt;
    }
    uint32_t sec = u32(off_);
    uint32_t frac = u32(off_ + 4);
    uint32_t incl = u32(off_ + 8);
    uint32_t orig = u32(off_ + 12);
    if (incl > kMaxRecord || (!nano_ && frac >= 1000000) || (nano_ && frac >= 1000000000)) {
        error_ = "corrupt record header at offset " + std::to_string(offset());
        return Next::Corrupt;
    }
    if (size_ - off_ - 16 < incl) {
        error_ = "truncated record at offset " + std::to_string(offset());
        return Next::Corrupt;
    }
    r.tsNs = static_cast<uint64_t>(sec) * 1000000000ULL +
             static_cast<uint64_t>(nano_ ? frac : frac * 1000ULL);
    r.caplen = incl;
    r.len = orig < incl ? incl : orig;
    r.data = base_ + off_ + 16;
    off_ += 16 + static_cast<size_t>(incl);
    return Next::Packet;
}

}  // namespace mp::capture
