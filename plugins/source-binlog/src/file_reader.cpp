// SPDX-License-Identifier: Apache-2.0
#include "file_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mp/sdk.hpp>

#include "binlog.hpp"

namespace mp::binlog {

namespace {
constexpr size_t kChunk = size_t{1} << 20;
}  // namespace

FileReader::FileReader(const std::string& path, size_t maxEventBytes)
    : path_(path), max_(maxEventBytes) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
        throw Error(path + ": " + std::strerror(errno));
    }
    buf_.resize(kChunk);
    if (fill(4) < 4 || std::memcmp(buf_.data(), kFileMagic.data(), 4) != 0) {
        ::close(fd_);
        fd_ = -1;
        throw Error(path + ": not a binary log (no \\xfebin magic)");
    }
    at_ = 4;
    offset_ = 4;
}

FileReader::~FileReader() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

size_t FileReader::fill(size_t n) {
    if (end_ - at_ >= n || eof_) {
        return end_ - at_;
    }
    // what is left of the buffer moves to its front; it grows only for an event longer than it
    if (at_ != 0) {
        std::memmove(buf_.data(), buf_.data() + at_, end_ - at_);
        end_ -= at_;
        at_ = 0;
    }
    if (buf_.size() < n) {
        buf_.resize(n);
    }
    while (end_ < n) {
        const ssize_t got = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error(path_ + ":" + std::to_string(offset_) + ": " + std::strerror(errno));
        }
        if (got == 0) {
            eof_ = true;
            break;
        }
        end_ += static_cast<size_t>(got);
    }
    return end_ - at_;
}

bool FileReader::next(const uint8_t*& data, size_t& size) {
    size_t have = fill(kHeaderLength);
    if (have == 0) {
        return false;
    }
    auto where = [&] { return path_ + ":" + std::to_string(offset_) + ": "; };
    if (have < kHeaderLength) {
        throw Error(where() + "the file ends inside an event header (still being written?)");
    }
    EventHeader h;
    parseHeader(buf_.data() + at_, kHeaderLength, h);
    if (h.size < kHeaderLength || h.size > max_) {
        throw Error(where() + "event of " + std::to_string(h.size) + " bytes (limit " +
                    std::to_string(max_) + ": max_event_mb)");
    }
    if (fill(h.size) < h.size) {
        throw Error(where() + "the file ends inside an event of " + std::to_string(h.size) +
                    " bytes (still being written?)");
    }
    data = buf_.data() + at_;
    size = h.size;
    at_ += h.size;
    offset_ += h.size;
    return true;
}

}  // namespace mp::binlog
