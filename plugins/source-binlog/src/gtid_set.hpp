// SPDX-License-Identifier: Apache-2.0
// MySQL's GTID sets: for each server UUID, the transaction numbers it has, as ascending,
// disjoint, closed intervals. The text form is MySQL's own (gtid_executed, START ... GTID):
// "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,4a...:1-9"; the binary form is the one of the
// PREVIOUS_GTIDS event and of COM_BINLOG_DUMP_GTID: n_sids (8 bytes), then per UUID its 16
// bytes, n_intervals (8) and each interval's start and end (8 each, the end exclusive), all
// little-endian. MariaDB's GTIDs are another thing (binlog.hpp: parseGtidState).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace mp::binlog {

class MysqlGtidSet {
  public:
    using Uuid = std::array<uint8_t, 16>;
    struct Interval {
        uint64_t first = 0;
        uint64_t last = 0;  // closed: [first, last]
        bool operator==(const Interval&) const = default;
    };
    /// Transaction numbers run from 1 to 2^63 - 2, as in MySQL (GNO_END is 2^63 - 1).
    static constexpr uint64_t kMaxGno = (uint64_t{1} << 63) - 2;

    /// MySQL's text form; blanks (newlines too, as gtid_executed prints them) around the
    /// parts are allowed, "" is the empty set, an interval whose end is below its start adds
    /// nothing (as in MySQL). False, with `out` empty, when it does not parse: no interval,
    /// a number 0 or too large, a bad UUID, or MySQL 8.3's tagged GTIDs ("uuid:tag:1-5").
    static bool parse(std::string_view text, MysqlGtidSet& out);
    /// The binary form; false, with `out` empty, when it is damaged or longer than `n`, or is
    /// MySQL 8.3's tagged form (not read).
    static bool decode(const uint8_t* d, size_t n, MysqlGtidSet& out);

    /// Adds one transaction (merged into its neighbours). Numbers 0 or above kMaxGno are
    /// ignored.
    void add(const Uuid& sid, uint64_t gno);
    /// Adds every transaction of `other`.
    void add(const MysqlGtidSet& other);
    bool contains(const Uuid& sid, uint64_t gno) const;
    bool empty() const { return sids_.empty(); }
    void clear() { sids_.clear(); }
    const std::vector<Interval>* intervals(const Uuid& sid) const;

    /// The text form, UUIDs in ascending order, lower-case hex, no blanks.
    std::string text() const;
    /// The binary form (UUIDs in ascending order, as MySQL encodes it).
    std::string encode() const;

    static std::string uuidText(const Uuid& sid);
    static bool parseUuid(std::string_view text, Uuid& out);

    bool operator==(const MysqlGtidSet&) const = default;

  private:
    void addInterval(const Uuid& sid, Interval iv);

    std::map<Uuid, std::vector<Interval>> sids_;
};

}  // namespace mp::binlog
