// SPDX-License-Identifier: Apache-2.0
// Fuzz target: source-binlog's event decoder (format description, table maps with their
// optional metadata, row images of every column type, compressed events, queries, GTIDs).
// The input is read as a binlog file's events after its magic: each event as long as its
// header says (cut at the end of the input). When the input does not start with a format
// description, one is given first (MariaDB 10.11, no checksums), so that the fuzzer's table
// maps and rows reach the value decoders; the corpus holds real events (the live test's).
// The same input is also read as a MySQL GTID set in text form (a start_gtid or checkpoint);
// a set read, or kept by the decoder from PREVIOUS_GTIDS and GTID events, must print as text
// and encode in binary that both read back as the same set.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "binlog.hpp"
#include "gtid_set.hpp"
#include "message.hpp"

namespace {

class Sink : public mp::binlog::Handler {
  public:
    void row(const mp::binlog::EventHeader& h, const mp::binlog::TableMap& t,
             mp::binlog::RowKind kind, const mp::binlog::Image& before,
             const mp::binlog::Image& after, uint32_t) override {
        mp::binlog::rowMessage(out, h, t, kind, before, after, pos, 0, {});
        if (out.empty() || out.front() != '{' || out.back() != '}') {
            __builtin_trap();
        }
    }
    void commit(const mp::binlog::EventHeader&, const mp::binlog::Position& p) override { pos = p; }
    std::string out;
    mp::binlog::Position pos;
};

std::vector<uint8_t> formatDescription() {
    std::vector<uint8_t> ev(19 + 2 + 50 + 4 + 1, 0);
    ev[4] = mp::binlog::kFormatDescription;
    ev[19] = 4;
    const char* version = "10.11.6-MariaDB-log";
    std::memcpy(ev.data() + 21, version, std::strlen(version));
    ev[19 + 2 + 50 + 4] = 19;
    // post-header lengths of types 1..171: the server's for the ones read here
    std::vector<uint8_t> ph(171, 0);
    ph[mp::binlog::kQuery - 1] = 13;
    ph[mp::binlog::kRotate - 1] = 8;
    ph[mp::binlog::kTableMap - 1] = 8;
    for (int t : {23, 24, 25, 166, 167, 168}) {
        ph[t - 1] = 8;
    }
    for (int t : {30, 31, 32, 169, 170, 171}) {
        ph[t - 1] = 10;
    }
    ph[mp::binlog::kGtid - 1] = 19;
    ev.insert(ev.end(), ph.begin(), ph.end());
    ev.push_back(0);  // checksum algorithm: off
    ev.insert(ev.end(), 4, 0);
    uint32_t size = static_cast<uint32_t>(ev.size());
    std::memcpy(ev.data() + 9, &size, 4);
    return ev;
}

// A GTID set's text and binary forms read back as the set.
void roundTrip(const mp::binlog::MysqlGtidSet& set) {
    mp::binlog::MysqlGtidSet again;
    if (!mp::binlog::MysqlGtidSet::parse(set.text(), again) || !(again == set)) {
        __builtin_trap();
    }
    const std::string bin = set.encode();
    if (!mp::binlog::MysqlGtidSet::decode(reinterpret_cast<const uint8_t*>(bin.data()), bin.size(),
                                          again) ||
        !(again == set)) {
        __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<uint8_t> fde = formatDescription();
    mp::binlog::MysqlGtidSet text;
    if (mp::binlog::MysqlGtidSet::parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                        text)) {
        roundTrip(text);
    }
    Sink sink;
    mp::binlog::Decoder d(sink);
    d.startFile("fuzz.000001");
    if (size < 5 || data[4] != mp::binlog::kFormatDescription) {
        if (!d.event(fde.data(), fde.size())) {
            __builtin_trap();  // the decoder must take its own server's format description
        }
    }
    size_t off = 0;
    while (off + mp::binlog::kHeaderLength <= size) {
        mp::binlog::EventHeader h;
        mp::binlog::parseHeader(data + off, size - off, h);
        size_t n = h.size < mp::binlog::kHeaderLength ? mp::binlog::kHeaderLength : h.size;
        n = n > size - off ? size - off : n;
        if (!d.event(data + off, n)) {
            if (d.error().empty()) {
                __builtin_trap();
            }
            break;
        }
        off += n;
        const std::string& state = d.position().gtidState;
        if (mp::binlog::isMysqlGtidState(state)) {
            mp::binlog::MysqlGtidSet set;
            if (!mp::binlog::MysqlGtidSet::parse(state, set)) {
                __builtin_trap();
            }
            roundTrip(set);
        }
    }
    return 0;
}
