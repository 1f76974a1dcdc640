// SPDX-License-Identifier: Apache-2.0
// Coverage: what the probe saw of one server's clients against what that server counted (its
// Questions and Com_* status counters, read by the decoder's watcher at each report). The
// account here is pure (no network): the watcher hands it the server's readings, the report
// the probe's counts.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "session.hpp"

namespace mp::mysql {

/// Statement kinds the server counts in its own Com_* counters, told from a template's
/// fingerprint (its first words).
enum class StatementKind : uint8_t {
    Select,    // SELECT, WITH ... SELECT, (SELECT ...) UNION ...: Com_select
    Insert,    // Com_insert + Com_insert_select
    Update,    // Com_update + Com_update_multi
    Delete,    // Com_delete + Com_delete_multi
    Replace,   // Com_replace + Com_replace_select
    Begin,     // BEGIN, START TRANSACTION: Com_begin
    Commit,    // Com_commit
    Rollback,  // ROLLBACK (not ROLLBACK TO SAVEPOINT): Com_rollback
    Other,
    Unknown,  // an execute of a statement whose text the probe does not know
};
constexpr size_t kStatementKinds = 10;

StatementKind statementKind(std::string_view fingerprint);

/// What the probe saw of one server's clients: commands by command byte, and the statements
/// of COM_QUERY and COM_STMT_EXECUTE by kind.
struct Seen {
    std::array<uint64_t, 256> commands{};
    std::array<uint64_t, kStatementKinds> kinds{};

    void add(const Transaction& tx);
    void merge(const Seen& o);
    bool empty() const;
    /// The commands the server's Questions counts: every command but COM_PING,
    /// COM_STATISTICS, COM_STMT_PREPARE, COM_STMT_CLOSE and COM_STMT_RESET (the server's
    /// CF_SKIP_QUESTIONS).
    uint64_t questions() const;
};

/// A reading of the server's status counters (name -> value).
using StatusCounters = std::map<std::string, uint64_t>;

/// The status counters the watcher reads (SHOW GLOBAL STATUS WHERE Variable_name IN ...).
const std::vector<std::string>& coverageCounters();

/// One server's coverage account. Each report interval it is given the server's reading
/// (taken just after the interval's end), what the watcher's own commands added to those
/// counters since the previous reading (the reading's own SHOW included), and what the probe
/// saw in the interval; it answers the interval's comparison and the one since the first
/// reading. A failed reading, or counters that went back (a server restart), start a new
/// baseline: what fell between the two readings is compared with nothing (counted in
/// `uncompared_intervals`); the total sums the intervals that were compared.
class CoverageAccount {
  public:
    struct Figure {
        uint64_t seen = 0;
        uint64_t counted = 0;
    };
    /// "questions", "stmt_execute", ..., "select", ...: in a fixed order.
    using Figures = std::vector<std::pair<std::string, Figure>>;

    /// A successful reading at `ts` (ns).
    void reading(const StatusCounters& server, const StatusCounters& own, const Seen& seen,
                 uint64_t ts);
    /// A reading that failed (`why`, one line): this interval compares nothing.
    void failed(const std::string& why, const Seen& seen, uint64_t ts);

    /// The report member's value: {"server":...,"interval":{...},"total":{...},...}.
    std::string json(const std::string& server) const;

    const Figures& interval() const { return interval_; }
    const Figures& total() const { return total_; }
    bool compared() const { return compared_; }  // this interval had a comparison
    uint64_t baselineNs() const { return baselineNs_; }

  private:
    std::optional<StatusCounters> last_;
    Figures interval_;
    Figures total_;
    bool compared_ = false;
    uint64_t baselineNs_ = 0;
    uint64_t readingNs_ = 0;
    uint64_t readings_ = 0;
    uint64_t failures_ = 0;
    uint64_t uncompared_ = 0;       // intervals after the first reading that compared nothing
    uint64_t unknownExecutes_ = 0;  // since the baseline: executes of unknown kind
    std::string error_;
};

}  // namespace mp::mysql
