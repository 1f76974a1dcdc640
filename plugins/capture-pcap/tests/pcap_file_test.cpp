// SPDX-License-Identifier: Apache-2.0
// The classic pcap reader through its read(2) buffer against the same reader on the whole file in
// memory: the bundled captures (real traffic) read with buffers from 64 bytes (every record
// straddles a refill, the buffer grows for large ones) to the default, and files cut anywhere.
#include "pcap_file.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Reader = mp::capture::ClassicPcapReader;

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int memFile(const std::string& bytes) {
    int fd = memfd_create("pcap_file_test", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
    return fd;
}

struct Outcome {
    size_t records = 0;
    size_t refills = 0;
    Reader::Next end = Reader::Next::End;
    std::string error;
    size_t offset = 0;
};

// Reads `bytes` both ways and checks every record is the same; returns how the buffered one went.
Outcome compare(const std::string& bytes, size_t buffer) {
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    Reader mem;
    Reader buf;
    int fd = memFile(bytes);
    const bool opened = mem.open(data, bytes.size());
    CHECK(buf.openFd(fd, buffer) == opened);
    Outcome o;
    if (opened) {
        mp::capture::PcapRecord a;
        mp::capture::PcapRecord b;
        while (true) {
            if (buf.needsRefill()) {
                ++o.refills;
            }
            Reader::Next x = mem.next(a);
            Reader::Next y = buf.next(b);
            REQUIRE(x == y);
            if (x != Reader::Next::Packet) {
                o.end = y;
                CHECK(mem.error() == buf.error());
                CHECK(mem.offset() == buf.offset());
                o.error = buf.error();
                o.offset = buf.offset();
                break;
            }
            REQUIRE(a.caplen == b.caplen);
            CHECK(a.tsNs == b.tsNs);
            CHECK(a.len == b.len);
            CHECK(std::memcmp(a.data, b.data, a.caplen) == 0);
            ++o.records;
        }
    }
    close(fd);
    return o;
}

const std::string kData = std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/";

}  // namespace

TEST_CASE("buffered reads give the records of the file in memory, whatever the buffer") {
    for (const char* name :
         {"sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx", "edge_cases_small"}) {
        CAPTURE(name);
        const std::string bytes = readFile(kData + name + ".pcap");
        REQUIRE(bytes.size() > 100000);
        size_t records = 0;
        for (size_t buffer : {size_t{64}, size_t{1000}, size_t{65536}, size_t{1} << 20}) {
            CAPTURE(buffer);
            Outcome o = compare(bytes, buffer);
            CHECK(o.end == Reader::Next::End);
            CHECK(o.offset == bytes.size());
            CHECK(o.records > 0);
            if (records != 0) {
                CHECK(o.records == records);
            }
            records = o.records;
            if (buffer < bytes.size()) {
                CHECK(o.refills > 0);  // the buffer was refilled under the records
            }
        }
    }
    // The README of the captures: 826 packets in the text one.
    CHECK(compare(readFile(kData + "sysbench_text_rw_2t_20tx.pcap"), 4096).records == 826);
}

TEST_CASE("buffered reads of cut and damaged files end as the in-memory reader does") {
    const std::string whole = readFile(kData + "sysbench_text_rw_2t_20tx.pcap");
    size_t truncated = 0;
    for (size_t cut = 24; cut < whole.size(); cut += whole.size() / 37) {
        CAPTURE(cut);
        Outcome o = compare(whole.substr(0, cut), 512);
        if (o.end == Reader::Next::Corrupt) {
            CHECK(o.error.find("truncated record") == 0);
            ++truncated;
        }
    }
    CHECK(truncated > 30);
    std::string damaged = whole;
    damaged[24 + 8 + 3] = '\x7f';  // the first record claims 2 GiB
    Outcome o = compare(damaged, 256);
    CHECK(o.end == Reader::Next::Corrupt);
    CHECK(o.error == "corrupt record header at offset 24");
    CHECK(o.records == 0);
    CHECK_FALSE(compare("not a capture", 64).records);
}

TEST_CASE("rewind reads the file again from its first record") {
    const std::string bytes = readFile(kData + "edge_cases_small.pcap");
    int fd = memFile(bytes);
    Reader r;
    REQUIRE(r.openFd(fd, 4096));
    mp::capture::PcapRecord rec;
    size_t first = 0;
    while (r.next(rec) == Reader::Next::Packet) {
        ++first;
    }
    REQUIRE(r.rewind());
    size_t second = 0;
    while (r.next(rec) == Reader::Next::Packet) {
        ++second;
    }
    CHECK(first > 0);
    CHECK(second == first);
    close(fd);
}
