// SPDX-License-Identifier: Apache-2.0
// MySQL events whose rows source-binlog does not read (partial JSON updates, compressed
// transactions) stop the decoder with a line that says what to set on the server: their
// changes are never skipped without a word.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "binlog.hpp"

namespace {

struct Rows : mp::binlog::Handler {
    void row(const mp::binlog::EventHeader&, const mp::binlog::TableMap&, mp::binlog::RowKind,
             const mp::binlog::Image&, const mp::binlog::Image&, uint32_t) override {
        ++rows;
    }
    void commit(const mp::binlog::EventHeader&, const mp::binlog::Position&) override {}
    int rows = 0;
};

std::vector<uint8_t> event(uint8_t type, size_t body) {
    std::vector<uint8_t> ev(mp::binlog::kHeaderLength + body, 0x5a);
    std::memset(ev.data(), 0, mp::binlog::kHeaderLength);
    ev[4] = type;
    const auto size = static_cast<uint32_t>(ev.size());
    std::memcpy(ev.data() + 9, &size, 4);
    return ev;
}

}  // namespace

TEST_CASE("MySQL partial JSON updates and compressed transactions are refused, not skipped") {
    struct Case {
        uint8_t type;
        const char* says;
    } cases[] = {{mp::binlog::kMysqlPartialUpdateRows, "binlog_row_value_options=''"},
                 {mp::binlog::kMysqlTransactionPayload, "binlog_transaction_compression=OFF"}};
    for (const Case& c : cases) {
        CAPTURE(static_cast<int>(c.type));
        Rows rows;
        mp::binlog::Decoder d(rows);
        d.startFile("mysql-bin.000001", 4);
        const auto ev = event(c.type, 40);
        CHECK_FALSE(d.event(ev.data(), ev.size()));
        CHECK(d.error().find(c.says) != std::string::npos);
        CHECK(d.error().find("mysql-bin.000001:4: event type " + std::to_string(c.type)) == 0);
        CHECK(rows.rows == 0);
    }
    // an event that changes no rows (MySQL's HEARTBEAT_V2, 41) still passes
    Rows rows;
    mp::binlog::Decoder d(rows);
    const auto ev = event(41, 8);
    CHECK(d.event(ev.data(), ev.size()));
}
