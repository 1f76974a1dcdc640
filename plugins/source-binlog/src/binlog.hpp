// SPDX-License-Identifier: Apache-2.0
// The binary log's events, decoded: one Decoder per binlog stream (a file read from disk or a
// replication connection) keeps what the events before tell the events after (the format
// description with its checksum algorithm, the table maps of the current statement, the GTID
// of the current transaction) and turns row events into row changes whose values are already
// JSON text. Every read is bounds-checked (mp::mysql::PacketReader): a damaged event is an
// error with its position, never a read past its end.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gtid_set.hpp"

namespace mp::binlog {

enum EventType : uint8_t {
    kQuery = 2,
    kStop = 3,
    kRotate = 4,
    kFormatDescription = 15,
    kXid = 16,
    kTableMap = 19,
    kWriteRowsV1 = 23,
    kUpdateRowsV1 = 24,
    kDeleteRowsV1 = 25,
    kHeartbeat = 27,
    kWriteRowsV2 = 30,
    kUpdateRowsV2 = 31,
    kDeleteRowsV2 = 32,
    kMysqlGtid = 33,
    kMysqlAnonymousGtid = 34,
    kMysqlPreviousGtids = 35,
    kMysqlPartialUpdateRows = 39,   // binlog_row_value_options=PARTIAL_JSON: refused
    kMysqlTransactionPayload = 40,  // binlog_transaction_compression=ON: refused
    kMysqlGtidTagged = 42,          // MySQL 8.3's tagged GTIDs: the GTID set is then unknown
    kAnnotateRows = 160,
    kBinlogCheckpoint = 161,
    kGtid = 162,
    kGtidList = 163,
    kStartEncryption = 164,
    kQueryCompressed = 165,
    kWriteRowsCompressedV1 = 166,
    kUpdateRowsCompressedV1 = 167,
    kDeleteRowsCompressedV1 = 168,
    kWriteRowsCompressed = 169,
    kUpdateRowsCompressed = 170,
    kDeleteRowsCompressed = 171,
};

constexpr size_t kHeaderLength = 19;
constexpr std::string_view kFileMagic =
    "\xfe"
    "bin";

struct EventHeader {
    uint32_t timestamp = 0;
    uint8_t type = 0;
    uint32_t serverId = 0;
    uint32_t size = 0;
    uint32_t logPos = 0;  // position just after this event in its file (0: artificial event)
    uint16_t flags = 0;
};

/// Reads the 19-byte common header; false when fewer bytes are given.
bool parseHeader(const uint8_t* d, size_t n, EventHeader& h);
/// A rows event (write, update, delete: v1, v2, MariaDB's compressed ones).
bool isRows(uint8_t type);

/// One column of a table map, with what the optional metadata says of it.
struct Column {
    uint8_t type = 0;      // the table map's type (MYSQL_TYPE_*)
    uint8_t realType = 0;  // STRING's real type: ENUM, SET or STRING; else = type
    uint16_t meta = 0;
    bool nullable = true;
    bool isUnsigned = false;
    bool binary = false;              // binary collation (63): bytes, base64 in JSON
    bool key = false;                 // part of the primary key (all columns when there is none)
    std::string name;                 // "@N" (1-based) when the binlog carries no names
    std::vector<std::string> labels;  // ENUM or SET values, when the binlog carries them
};

struct TableMap {
    uint64_t id = 0;
    std::string schema;
    std::string table;
    std::vector<Column> columns;
    bool named = false;    // names from the binlog (binlog_row_metadata=FULL)
    bool keyed = false;    // a primary key from the binlog (or from the completion hook)
    bool signs = false;    // signedness from the binlog (MINIMAL or FULL)
    bool charset = false;  // character sets from the binlog (MINIMAL or FULL)
    bool labels = false;   // ENUM/SET names from the binlog (FULL)
};

enum class RowKind : uint8_t { Insert, Update, Delete };

/// One row image: the JSON text of each column's value, "" for a column the image lacks
/// (binlog_row_image MINIMAL or NOBLOB).
struct Image {
    std::string text;
    std::vector<uint32_t> end;  // value i is text[end[i-1] .. end[i])
    std::string_view value(size_t i) const {
        uint32_t b = i == 0 ? 0 : end[i - 1];
        return std::string_view(text).substr(b, end[i] - b);
    }
    void clear() {
        text.clear();
        end.clear();
    }
};

/// Where the stream is: the GTID of the transaction being read and the file and position.
struct Position {
    std::string file;
    uint64_t pos = 4;       // end of the last event read (the next event starts here)
    std::string gtid;       // of the current/last transaction: MariaDB "domain-server-seq",
                            // MySQL "uuid:number"
    uint64_t gtidSeq = 0;   // a transaction's ordinal in the stream (for ids), 0 before any
    std::string gtidState;  // where a GTID start resumes; MariaDB: the last committed GTID of
                            // every domain, "0-1-5,1-2-9"; MySQL: the set of every transaction
                            // before, "uuid:1-9,...", once it is known (a GTID start, or a
                            // PREVIOUS_GTIDS event), else ""
};

/// What the decoder reports. Every callback may throw to stop the decoding.
class Handler {
  public:
    virtual ~Handler() = default;
    /// A row change of a table the filter accepts. `index` counts the row changes of the
    /// transaction from 0.
    virtual void row(const EventHeader& h, const TableMap& t, RowKind kind, const Image& before,
                     const Image& after, uint32_t index) = 0;
    /// A transaction committed (XID, COMMIT, or a standalone GTID group such as a DDL ended);
    /// `pos` is where the next transaction starts: a safe point to resume from.
    virtual void commit(const EventHeader& h, const Position& pos) = 0;
    /// A statement that is not a row change: DDL (CREATE, ALTER, DROP...); schema in force.
    virtual void ddl(const EventHeader&, std::string_view /*schema*/, std::string_view /*sql*/) {}
    virtual void heartbeat(const EventHeader&, const Position&) {}
};

/// Decides which tables' rows are decoded (the others are skipped, their values unread).
using TableFilter = bool (*)(void* ctx, std::string_view schema, std::string_view table);

class Decoder {
  public:
    /// Counted by the decoding thread, read by any (the plugin's stats timer).
    struct Stats {
        std::atomic<uint64_t> events{0};
        std::atomic<uint64_t> rowEvents{0};
        std::atomic<uint64_t> rows{0};
        std::atomic<uint64_t> skippedRows{0};  // row events of filtered-out tables
        std::atomic<uint64_t> transactions{0};
        std::atomic<uint64_t> checksumErrors{0};
    };

    explicit Decoder(Handler& handler) : handler_(handler) {}
    void setFilter(TableFilter f, void* ctx) {
        filter_ = f;
        filterCtx_ = ctx;
    }
    /// Checks each event's CRC32 when the format description announces one (default on).
    void verifyChecksums(bool on) { verify_ = on; }
    /// Called before the first event of a file or stream.
    void startFile(std::string file, uint64_t pos = 4);

    /// Decodes one whole event (header, body and checksum). False with error() set when it is
    /// damaged or cannot be decoded; the decoder is then not usable for the rest of the stream.
    bool event(const uint8_t* d, size_t n);
    const std::string& error() const { return error_; }

    const Position& position() const { return pos_; }
    /// Restores the GTID state read from a checkpoint or given as start: MariaDB's
    /// ("0-1-5,1-2-9") or a MySQL GTID set ("uuid:1-9,..."); false when it does not parse.
    /// "" is the empty state of either (a stream from the oldest binlog).
    bool setGtidState(std::string_view state);
    /// A new connection: forget the transaction under way and the table maps (the stream
    /// starts again at a transaction boundary, with its own format description).
    void reset();
    bool hasChecksum() const { return checksum_; }
    /// A replication stream starts with an artificial ROTATE before the format description:
    /// the checksum setting the connection negotiated applies to it.
    void assumeChecksum(bool on) { checksum_ = on; }
    const std::string& serverVersion() const { return serverVersion_; }
    const Stats& stats() const { return stats_; }
    /// Column names, primary keys (and signedness, binary or text, ENUM/SET names) the binlog
    /// does not carry: the caller may supply them (information_schema) through this hook,
    /// called for each table map without names, before "every column is a key" applies.
    using Complete = void (*)(void* ctx, TableMap& t);
    void setCompletion(Complete f, void* ctx) {
        complete_ = f;
        completeCtx_ = ctx;
    }

  private:
    bool fail(const EventHeader& h, std::string why);
    bool formatDescription(const EventHeader& h, const uint8_t* d, size_t n);
    bool tableMap(const EventHeader& h, const uint8_t* d, size_t n);
    bool rows(const EventHeader& h, const uint8_t* d, size_t n);
    bool query(const EventHeader& h, const uint8_t* d, size_t n, bool compressed);
    size_t postHeader(uint8_t type, size_t fallback) const;
    std::string joinState() const;

    Handler& handler_;
    TableFilter filter_ = nullptr;
    void* filterCtx_ = nullptr;
    Complete complete_ = nullptr;
    void* completeCtx_ = nullptr;
    bool verify_ = true;
    bool checksum_ = false;
    std::vector<uint8_t> postHeaders_;
    std::unordered_map<uint64_t, TableMap> tables_;
    Position pos_;
    std::map<uint32_t, std::string> domains_;  // committed GTID per domain
    // MySQL: every transaction before the stream's position, known once a GTID state was set
    // or a PREVIOUS_GTIDS event passed (a stream that starts at a file and position in the
    // middle of a file learns it at the next file); the current transaction's GTID
    MysqlGtidSet mysqlSet_;
    bool mysqlKnown_ = false;
    bool mysqlGtid_ = false;
    MysqlGtidSet::Uuid mysqlSid_{};
    uint64_t mysqlGno_ = 0;
    uint32_t domain_ = 0;         // of the transaction being read
    bool mariaGtid_ = false;      // the transaction being read has a GTID
    bool inTransaction_ = false;  // between BEGIN and its XID or COMMIT
    bool committed_ = false;      // the event being read ends a transaction
    std::string serverVersion_;
    uint32_t rowIndex_ = 0;
    Image before_, after_;
    std::string inflated_;
    std::string error_;
    Stats stats_;
};

/// A GTID state in MySQL's form (a UUID and a colon) rather than MariaDB's.
inline bool isMysqlGtidState(std::string_view state) {
    return state.find(':') != std::string_view::npos;
}

/// A MariaDB GTID state ("0-1-5,1-2-9") as domain -> (server, sequence); false when it does
/// not parse ("" is the empty state).
struct GtidEntry {
    uint32_t server = 0;
    uint64_t seq = 0;
};
bool parseGtidState(std::string_view state, std::map<uint32_t, GtidEntry>& out);

/// Decompresses MariaDB's compressed payload (a header byte 0x8N, N big-endian length bytes,
/// then zlib) into `out`, at most `limit` bytes. False when damaged.
bool uncompress(const uint8_t* d, size_t n, std::string& out, size_t limit);

}  // namespace mp::binlog
