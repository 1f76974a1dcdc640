// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the classic pcap reader of capture-pcap on arbitrary file contents, in memory and
// through its read(2) buffer (a small one, so records straddle refills): both must give the
// same records and end the same way.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pcap_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using Reader = mp::capture::ClassicPcapReader;
    Reader r;
    const bool opened = r.open(data, size);
    int fd = memfd_create("fuzz_pcap_file", MFD_CLOEXEC);
    if (fd < 0 || (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) ||
        lseek(fd, 0, SEEK_SET) != 0) {
        __builtin_trap();
    }
    Reader b;
    const size_t buffer = 64 + (size > 0 ? data[size - 1] : 0);
    if (b.openFd(fd, buffer) != opened) {
        __builtin_trap();
    }
    if (!opened) {
        close(fd);
        return 0;
    }
    mp::capture::PcapRecord rec;
    mp::capture::PcapRecord brec;
    size_t n = 0;
    while (true) {
        Reader::Next x = r.next(rec);
        Reader::Next y = b.next(brec);
        if (x != y) {
            __builtin_trap();
        }
        if (x != Reader::Next::Packet) {
            if (r.error() != b.error() || r.offset() != b.offset()) {
                __builtin_trap();
            }
            break;
        }
        if (rec.data < data || rec.data + rec.caplen > data + size || rec.len < rec.caplen) {
            __builtin_trap();
        }
        if (rec.tsNs != brec.tsNs || rec.caplen != brec.caplen || rec.len != brec.len ||
            std::memcmp(rec.data, brec.data, rec.caplen) != 0) {
            __builtin_trap();
        }
        if (++n > size) {
            __builtin_trap();  // every record consumes at least 16 bytes: no endless loop
        }
    }
    close(fd);
    return 0;
}
