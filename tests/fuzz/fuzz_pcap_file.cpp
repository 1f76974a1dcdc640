// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the zero-copy classic pcap reader of capture-pcap on arbitrary file contents.
#include <cstddef>
#include <cstdint>

#include "pcap_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    mp::capture::ClassicPcapReader r;
    if (!r.open(data, size)) {
        return 0;
    }
    mp::capture::PcapRecord rec;
    size_t n = 0;
    while (r.next(rec) == mp::capture::ClassicPcapReader::Next::Packet) {
        if (rec.data < data || rec.data + rec.caplen > data + size || rec.len < rec.caplen) {
            __builtin_trap();
        }
        volatile uint8_t sink = 0;
        for (uint32_t i = 0; i < rec.caplen; ++i) {
            sink = sink ^ rec.data[i];
        }
        if (++n > size) {
            __builtin_trap();  // every record consumes at least 16 bytes: no endless loop
        }
    }
    return 0;
}
