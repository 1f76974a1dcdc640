// SPDX-License-Identifier: Apache-2.0
#include "file_reader.hpp"

#include <cerrno>
#include <cstring>
#include <mp/sdk.hpp>

#include "binlog.hpp"

namespace mp::binlog {

FileReader::FileReader(const std::string& path, size_t maxEventBytes)
    : path_(path), max_(maxEventBytes) {
    f_ = std::fopen(path.c_str(), "rb");
    if (f_ == nullptr) {
        throw Error(path + ": " + std::strerror(errno));
    }
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
    char magic[4];
    if (std::fread(magic, 1, 4, f_) != 4 || std::string_view(magic, 4) != kFileMagic) {
        std::fclose(f_);
        f_ = nullptr;
        throw Error(path + ": not a binary log (no \\xfebin magic)");
    }
    offset_ = 4;
}

FileReader::~FileReader() {
    if (f_ != nullptr) {
        std::fclose(f_);
    }
}

bool FileReader::next(std::vector<uint8_t>& ev) {
    ev.resize(kHeaderLength);
    size_t got = std::fread(ev.data(), 1, kHeaderLength, f_);
    if (got == 0) {
        return false;
    }
    auto where = [&] { return path_ + ":" + std::to_string(offset_) + ": "; };
    if (got < kHeaderLength) {
        throw Error(where() + "the file ends inside an event header (still being written?)");
    }
    EventHeader h;
    parseHeader(ev.data(), ev.size(), h);
    if (h.size < kHeaderLength || h.size > max_) {
        throw Error(where() + "event of " + std::to_string(h.size) + " bytes (limit " +
                    std::to_string(max_) + ": max_event_mb)");
    }
    ev.resize(h.size);
    got = std::fread(ev.data() + kHeaderLength, 1, h.size - kHeaderLength, f_);
    if (got != h.size - kHeaderLength) {
        throw Error(where() + "the file ends inside an event of " + std::to_string(h.size) +
                    " bytes (still being written?)");
    }
    offset_ += h.size;
    return true;
}

}  // namespace mp::binlog
