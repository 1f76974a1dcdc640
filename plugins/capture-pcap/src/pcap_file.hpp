// SPDX-License-Identifier: Apache-2.0
// A reader of classic pcap files, either held in memory or read from a file descriptor through
// one buffer refilled by read(2) (records are handed out in place, without a copy, in both).
// Bounds-checked on every record: a corrupt or truncated file ends the reading with a reason,
// never a crash. pcapng and anything else is left to libpcap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mp::capture {

struct PcapRecord {
    uint64_t tsNs = 0;
    uint32_t caplen = 0;
    uint32_t len = 0;
    const uint8_t* data = nullptr;
};

class ClassicPcapReader {
  public:
    enum class Next { Packet, End, Corrupt };

    /// True when `base` starts with a classic pcap header this reader understands. Records
    /// point into `base`.
    bool open(const uint8_t* base, size_t size);
    /// The same, reading `fd` (not owned; read from its current offset, which must be the file's
    /// start) through a buffer of `bufferBytes` (grown for a larger record). Records point into
    /// the buffer and stay valid until next() refills it: see needsRefill(). False when the file
    /// does not start with a classic pcap header (error() says why when reading failed).
    bool openFd(int fd, size_t bufferBytes = 1 << 20);

    Next next(PcapRecord& r);
    /// True when the next call to next() refills the buffer, which ends the life of every record
    /// returned so far (never in memory mode).
    bool needsRefill() const;
    /// Rewinds to the first record (for looping). False when the file cannot be read again.
    bool rewind();

    uint32_t linkType() const { return link_; }
    bool nanosecond() const { return nano_; }
    /// Offset in the file of the next record.
    size_t offset() const { return fileBase_ + off_; }
    const std::string& error() const { return error_; }

  private:
    uint32_t u32(size_t at) const;
    bool header();
    bool complete() const;  // the next record is whole in the window (or cannot be)
    bool refill();

    const uint8_t* base_ = nullptr;
    size_t size_ = 0;  // bytes in the window
    size_t off_ = 0;   // next record in the window
    bool swapped_ = false;
    bool nano_ = false;
    uint32_t link_ = 0;
    uint32_t snaplen_ = 0;
    std::string error_;
    // Buffered mode.
    int fd_ = -1;
    std::vector<uint8_t> buf_;
    size_t fileBase_ = 0;  // file offset of the window's first byte
    bool eof_ = false;
};

}  // namespace mp::capture
