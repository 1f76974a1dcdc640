// SPDX-License-Identifier: Apache-2.0
// A zero-copy reader of classic pcap files held in memory (a mapped file). Bounds-checked on
// every record: a corrupt or truncated file ends the reading with a reason, never a crash.
// pcapng and anything else is left to libpcap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

    /// True when `base` starts with a classic pcap header this reader understands.
    bool open(const uint8_t* base, size_t size);
    Next next(PcapRecord& r);
    /// Rewinds to the first record (for looping).
    void rewind() { off_ = 24; }

    uint32_t linkType() const { return link_; }
    bool nanosecond() const { return nano_; }
    size_t offset() const { return off_; }
    const std::string& error() const { return error_; }

  private:
    uint32_t u32(size_t at) const;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    size_t off_ = 0;
    bool swapped_ = false;
    bool nano_ = false;
    uint32_t link_ = 0;
    uint32_t snaplen_ = 0;
    std::string error_;
};

}  // namespace mp::capture
