// SPDX-License-Identifier: Apache-2.0
#include "binlog.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mp/mysql_wire.hpp>

#include "crc32.hpp"
#include "values.hpp"

namespace mp::binlog {
namespace {

using mysql::PacketReader;

// Optional metadata of a table map (binlog_row_metadata MINIMAL or FULL).
enum OptionalMetadata : uint8_t {
    kSignedness = 1,
    kDefaultCharset = 2,
    kColumnCharset = 3,
    kColumnName = 4,
    kSetStrValue = 5,
    kEnumStrValue = 6,
    kGeometryType = 7,
    kSimplePrimaryKey = 8,
    kPrimaryKeyWithPrefix = 9,
    kEnumAndSetDefaultCharset = 10,
    kEnumAndSetColumnCharset = 11,
    kColumnVisibility = 12,
};

constexpr uint32_t kBinaryCollation = 63;
constexpr uint8_t kChecksumOff = 0;
constexpr size_t kFlagsOffset = 17;     // the header's flags (2 bytes, little-endian)
constexpr uint8_t kBinlogInUse = 0x01;  // LOG_EVENT_BINLOG_IN_USE_F
constexpr uint8_t kChecksumCrc32 = 1;
constexpr uint8_t kGtidGroupCommitId = 2;
constexpr size_t kMaxTablesHeld = 4096;       // table maps of one statement, at most
constexpr size_t kMaxInflated = 1024u << 20;  // a compressed event inflates to this, at most

bool isNumeric(uint8_t t) {
    switch (t) {
        case mysql::kTypeTiny:
        case mysql::kTypeShort:
        case mysql::kTypeInt24:
        case mysql::kTypeLong:
        case mysql::kTypeLongLong:
        case mysql::kTypeFloat:
        case mysql::kTypeDouble:
        case mysql::kTypeNewDecimal:
        case mysql::kTypeDecimal:
            return true;
        default:
            return false;
    }
}

// Columns whose character set the optional metadata lists: the string types and, on MariaDB,
// GEOMETRY (a BLOB underneath, binary); not ENUM and SET (listed apart).
bool isCharacter(const Column& c) {
    switch (c.type) {
        case mysql::kTypeString:
            return c.realType == mysql::kTypeString;
        case mysql::kTypeVarchar:
        case mysql::kTypeVarString:
        case mysql::kTypeBlob:
        case mysql::kTypeGeometry:
            return true;
        default:
            return false;
    }
}

// Server version "10.11.6-MariaDB-log" or "8.0.36": whether its format description ends with
// the checksum algorithm (MySQL 5.6.1 and MariaDB 5.3 on).
bool versionHasChecksumAlgorithm(std::string_view v) {
    unsigned part[3] = {0, 0, 0};
    size_t i = 0;
    for (unsigned& p : part) {
        while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
            p = p * 10 + static_cast<unsigned>(v[i] - '0');
            ++i;
        }
        if (i < v.size() && v[i] == '.') {
            ++i;
        } else {
            break;
        }
    }
    const unsigned product = part[0] * 10000 + part[1] * 100 + part[2];
    const bool maria = v.find("MariaDB") != std::string_view::npos;
    return product >= (maria ? 50300u : 50601u);
}

}  // namespace

bool isRows(uint8_t t) {
    return (t >= kWriteRowsV1 && t <= kDeleteRowsV1) || (t >= kWriteRowsV2 && t <= kDeleteRowsV2) ||
           (t >= kWriteRowsCompressedV1 && t <= kDeleteRowsCompressed);
}

bool parseHeader(const uint8_t* d, size_t n, EventHeader& h) {
    PacketReader r(d, n);
    h.timestamp = static_cast<uint32_t>(r.le(4));
    h.type = static_cast<uint8_t>(r.le(1));
    h.serverId = static_cast<uint32_t>(r.le(4));
    h.size = static_cast<uint32_t>(r.le(4));
    h.logPos = static_cast<uint32_t>(r.le(4));
    h.flags = static_cast<uint16_t>(r.le(2));
    return r.ok();
}

bool uncompress(const uint8_t* d, size_t n, std::string& out, size_t limit) {
    if (n < 1 || (d[0] & 0xe0) != 0x80) {
        return false;
    }
    const size_t lenlen = d[0] & 0x07;
    if (lenlen < 1 || lenlen > 4 || n < 1 + lenlen) {
        return false;
    }
    uint64_t len = 0;
    for (size_t i = 0; i < lenlen; ++i) {
        len = (len << 8) | d[1 + i];
    }
    if (len > limit) {
        return false;
    }
    out.resize(len);
    uLongf outLen = static_cast<uLongf>(len);
    int rc = ::uncompress(reinterpret_cast<Bytef*>(out.data()), &outLen, d + 1 + lenlen,
                          static_cast<uLong>(n - 1 - lenlen));
    if (rc != Z_OK || outLen != len) {
        out.clear();
        return false;
    }
    return true;
}

bool parseGtidState(std::string_view state, std::map<uint32_t, GtidEntry>& out) {
    out.clear();
    while (!state.empty()) {
        size_t comma = state.find(',');
        std::string one(state.substr(0, comma));
        state = comma == std::string_view::npos ? std::string_view() : state.substr(comma + 1);
        unsigned long long d = 0;
        unsigned long long s = 0;
        unsigned long long n = 0;
        char rest = 0;
        if (std::sscanf(one.c_str(), "%llu-%llu-%llu%c", &d, &s, &n, &rest) != 3 ||
            d > UINT32_MAX || s > UINT32_MAX) {
            return false;
        }
        out[static_cast<uint32_t>(d)] = GtidEntry{static_cast<uint32_t>(s), n};
    }
    return true;
}

bool Decoder::setGtidState(std::string_view state) {
    if (isMysqlGtidState(state)) {
        MysqlGtidSet set;
        if (!MysqlGtidSet::parse(state, set)) {
            return false;
        }
        mysqlSet_ = std::move(set);
        mysqlKnown_ = true;
        domains_.clear();
        pos_.gtidState = mysqlSet_.text();
        return true;
    }
    std::map<uint32_t, GtidEntry> parsed;
    if (!parseGtidState(state, parsed)) {
        return false;
    }
    domains_.clear();
    mysqlSet_.clear();
    mysqlKnown_ = state.empty();  // a MySQL stream from the oldest binlog knows its set
    for (const auto& [domain, e] : parsed) {
        domains_[domain] =
            std::to_string(domain) + "-" + std::to_string(e.server) + "-" + std::to_string(e.seq);
    }
    pos_.gtidState = joinState();
    return true;
}

std::string Decoder::joinState() const {
    std::string out;
    for (const auto& entry : domains_) {
        out += (out.empty() ? "" : ",") + entry.second;
    }
    return out;
}

void Decoder::reset() {
    tables_.clear();
    inTransaction_ = false;
    committed_ = false;
    mariaGtid_ = false;
    mysqlGtid_ = false;
    rowIndex_ = 0;
}

void Decoder::startFile(std::string file, uint64_t pos) {
    pos_.file = std::move(file);
    pos_.pos = pos;
    tables_.clear();
}

bool Decoder::fail(const EventHeader& h, std::string why) {
    error_ = pos_.file + ":" + std::to_string(pos_.pos) + ": event type " + std::to_string(h.type) +
             ": " + why;
    return false;
}

size_t Decoder::postHeader(uint8_t type, size_t fallback) const {
    return type >= 1 && type <= postHeaders_.size() ? postHeaders_[type - 1] : fallback;
}

bool Decoder::event(const uint8_t* d, size_t n) {
    EventHeader h;
    if (!parseHeader(d, n, h)) {
        EventHeader none;
        return fail(none, "event shorter than its header (" + std::to_string(n) + " bytes)");
    }
    if (h.size != n) {
        return fail(
            h, "event says " + std::to_string(h.size) + " bytes, " + std::to_string(n) + " given");
    }
    stats_.events.fetch_add(1, std::memory_order_relaxed);
    size_t bodyEnd = n;
    if (h.type == kFormatDescription) {
        if (!formatDescription(h, d, n)) {
            return false;
        }
    } else {
        if (checksum_) {
            if (n < kHeaderLength + 4) {
                return fail(h, "no room for the checksum");
            }
            bodyEnd = n - 4;
            if (verify_) {
                uint32_t want = 0;
                std::memcpy(&want, d + bodyEnd, 4);  // little-endian hosts (x86, arm64)
                const uint32_t got = crc32(0, d, bodyEnd);
                if (got != want) {
                    stats_.checksumErrors.fetch_add(1, std::memory_order_relaxed);
                    return fail(h, "checksum mismatch (damaged event)");
                }
            }
        }
        const uint8_t* body = d + kHeaderLength;
        const size_t len = bodyEnd - kHeaderLength;
        switch (h.type) {
            case kRotate: {
                PacketReader r(body, len);
                uint64_t pos = r.le(postHeader(kRotate, 8) == 8 ? 8 : 0);
                std::string file = r.rest(512);
                if (!r.ok()) {
                    return fail(h, "short ROTATE");
                }
                pos_.file = std::move(file);
                pos_.pos = pos;
                tables_.clear();
                return true;  // its log_pos is the old file's (or 0): not ours
            }
            case kGtid: {
                PacketReader r(body, len);
                uint64_t seq = r.le(8);
                auto domain = static_cast<uint32_t>(r.le(4));
                auto flags = static_cast<uint8_t>(r.le(1));
                if ((flags & kGtidGroupCommitId) != 0) {
                    r.skip(8);
                }
                if (!r.ok()) {
                    return fail(h, "short GTID");
                }
                pos_.gtid = std::to_string(domain) + "-" + std::to_string(h.serverId) + "-" +
                            std::to_string(seq);
                domain_ = domain;
                mariaGtid_ = true;
                ++pos_.gtidSeq;
                rowIndex_ = 0;
                break;
            }
            case kQuery:
            case kQueryCompressed:
                if (!query(h, body, len, h.type == kQueryCompressed)) {
                    return false;
                }
                break;
            case kXid:
                committed_ = true;
                break;
            case kMysqlGtid: {  // MySQL: flags, the server's UUID, the transaction number
                PacketReader r(body, len);
                r.skip(1);
                if (!r.has(16)) {
                    return fail(h, "short GTID");
                }
                std::copy_n(r.here(), 16, mysqlSid_.begin());
                r.skip(16);
                mysqlGno_ = r.le(8);
                if (!r.ok()) {
                    return fail(h, "short GTID");
                }
                pos_.gtid = MysqlGtidSet::uuidText(mysqlSid_) + ':' + std::to_string(mysqlGno_);
                mysqlGtid_ = true;
                ++pos_.gtidSeq;
                rowIndex_ = 0;
                break;
            }
            case kMysqlPreviousGtids: {
                // every transaction of the files before this one: with what the stream
                // started from and what it passed, the set of everything before is known
                MysqlGtidSet previous;
                if (MysqlGtidSet::decode(body, len, previous)) {
                    mysqlSet_.add(previous);
                    mysqlKnown_ = true;
                } else {
                    mysqlKnown_ = false;  // the tagged form (not read): resume by position
                }
                pos_.gtidState = mysqlKnown_ ? mysqlSet_.text() : std::string();
                break;
            }
            case kMysqlGtidTagged:
                // a transaction with a tagged GTID (not read): the set is no longer known,
                // checkpoints hold the file and position only
                mysqlKnown_ = false;
                pos_.gtidState.clear();
                [[fallthrough]];
            case kMysqlAnonymousGtid:
                // a transaction without a GTID read: its ids are its file and position (not
                // the GTID of the transaction before)
                mysqlGtid_ = false;
                pos_.gtid.clear();
                ++pos_.gtidSeq;
                rowIndex_ = 0;
                break;
            case kTableMap:
                if (!tableMap(h, body, len)) {
                    return false;
                }
                break;
            case kHeartbeat:
                handler_.heartbeat(h, pos_);
                return true;  // its log_pos is the master's position, the file its name
            // MySQL events that hold rows in a form not read yet: refused, never skipped (their
            // changes would be lost without a word)
            case kMysqlPartialUpdateRows:
                return fail(h,
                            "MySQL partial JSON update (not read): set "
                            "binlog_row_value_options='' on the server");
            case kMysqlTransactionPayload:
                return fail(h,
                            "MySQL compressed transaction (not read): set "
                            "binlog_transaction_compression=OFF on the server");
            default:
                if (isRows(h.type)) {
                    if (!rows(h, body, len)) {
                        return false;
                    }
                }
                // Anything else (GTID lists, checkpoints, annotate rows, MySQL's GTIDs,
                // user variables...) changes nothing in the rows we publish.
                break;
        }
    }
    if (h.logPos != 0) {
        pos_.pos = h.logPos;
    }
    if (committed_) {
        committed_ = false;
        inTransaction_ = false;
        stats_.transactions.fetch_add(1, std::memory_order_relaxed);
        tables_.clear();  // each transaction maps its tables again
        if (mariaGtid_) {
            mariaGtid_ = false;
            domains_[domain_] = pos_.gtid;
            pos_.gtidState.clear();
            pos_.gtidState = joinState();
        } else if (mysqlGtid_) {
            mysqlGtid_ = false;
            if (mysqlKnown_) {
                mysqlSet_.add(mysqlSid_, mysqlGno_);
                pos_.gtidState = mysqlSet_.text();
            }
        }
        handler_.commit(h, pos_);
    }
    return true;
}

bool Decoder::formatDescription(const EventHeader& h, const uint8_t* d, size_t n) {
    PacketReader r(d + kHeaderLength, n - kHeaderLength);
    r.skip(2);  // binlog version (4)
    if (!r.has(50)) {
        return fail(h, "short FORMAT_DESCRIPTION");
    }
    const auto* v = reinterpret_cast<const char*>(r.here());
    std::string version(v, strnlen(v, 50));
    r.skip(50);
    r.skip(4);  // created
    auto headerLength = static_cast<uint8_t>(r.le(1));
    if (!r.ok() || headerLength != kHeaderLength) {
        return fail(h, "FORMAT_DESCRIPTION with a header of " + std::to_string(headerLength) +
                           " bytes (only binlog v4 is read)");
    }
    size_t rest = r.left();
    bool alg = versionHasChecksumAlgorithm(version);
    if (alg) {
        if (rest < 5) {
            return fail(h, "short FORMAT_DESCRIPTION");
        }
        rest -= 5;
        const uint8_t algorithm = d[n - 5];
        if (algorithm != kChecksumOff && algorithm != kChecksumCrc32) {
            return fail(h, "checksum algorithm " + std::to_string(algorithm) + " unknown");
        }
        checksum_ = algorithm == kChecksumCrc32;
        if (checksum_ && verify_) {
            uint32_t want = 0;
            std::memcpy(&want, d + n - 4, 4);
            // The server sets "binlog in use" in the header's flags of a file it is writing
            // and clears it at close, after the checksum was computed without it.
            uint32_t crc = crc32(0, d, kFlagsOffset);
            const uint8_t flags = d[kFlagsOffset] & ~kBinlogInUse;
            crc = crc32(crc, &flags, 1);
            crc = crc32(crc, d + kFlagsOffset + 1, n - 4 - kFlagsOffset - 1);
            if (crc != want) {
                stats_.checksumErrors.fetch_add(1, std::memory_order_relaxed);
                return fail(h, "checksum mismatch (damaged event)");
            }
        }
    } else {
        checksum_ = false;
    }
    postHeaders_.assign(r.here(), r.here() + rest);
    tables_.clear();
    serverVersion_ = version;
    return true;
}

bool Decoder::query(const EventHeader& h, const uint8_t* d, size_t n, bool compressed) {
    PacketReader r(d, n);
    r.skip(8);  // thread id, execution time
    size_t dbLen = r.le(1);
    r.skip(2);  // error code
    size_t statusLen = r.le(2);
    r.skip(postHeader(kQuery, 13) > 13 ? postHeader(kQuery, 13) - 13 : 0);
    r.skip(statusLen);
    if (!r.has(dbLen + 1)) {
        return fail(h, "short QUERY");
    }
    std::string_view schema(reinterpret_cast<const char*>(r.here()), dbLen);
    r.skip(dbLen + 1);
    std::string_view sql(reinterpret_cast<const char*>(r.here()), r.left());
    if (compressed) {
        if (!uncompress(r.here(), r.left(), inflated_, kMaxInflated)) {
            return fail(h, "damaged compressed QUERY");
        }
        sql = inflated_;
    }
    if (sql == "BEGIN") {
        inTransaction_ = true;
        return true;
    }
    if (sql == "COMMIT" || sql == "ROLLBACK") {
        // COMMIT ends a group of non-transactional changes; ROLLBACK one whose
        // non-transactional part stays done: its rows were published, so it commits too.
        committed_ = true;
        return true;
    }
    if (sql.substr(0, 3) == "XA ") {
        committed_ = sql.substr(0, 9) == "XA COMMIT" || sql.substr(0, 11) == "XA ROLLBACK";
        return true;
    }
    handler_.ddl(h, schema, sql);
    tables_.clear();  // a DDL may change any table: new maps will follow
    if (!inTransaction_) {
        committed_ = true;  // a statement outside BEGIN ... COMMIT (DDL) is its own transaction
    }
    return true;
}

bool Decoder::tableMap(const EventHeader& h, const uint8_t* d, size_t n) {
    PacketReader r(d, n);
    TableMap t;
    t.id = r.le(postHeader(kTableMap, 8) == 6 ? 4 : 6);
    r.skip(2);  // flags
    size_t len = r.le(1);
    if (!r.has(len + 1)) {
        return fail(h, "short TABLE_MAP");
    }
    t.schema.assign(reinterpret_cast<const char*>(r.here()), len);
    r.skip(len + 1);
    len = r.le(1);
    if (!r.has(len + 1)) {
        return fail(h, "short TABLE_MAP");
    }
    t.table.assign(reinterpret_cast<const char*>(r.here()), len);
    r.skip(len + 1);
    uint64_t count = r.lenenc();
    if (!r.has(count) || count == 0 || count > 4096) {
        return fail(h, "TABLE_MAP of " + std::to_string(count) + " columns");
    }
    t.columns.resize(count);
    for (auto& c : t.columns) {
        c.type = static_cast<uint8_t>(r.le(1));
        if (metadataLength(c.type) < 0) {
            return fail(h, "column type " + std::to_string(c.type) + " unknown in " + t.schema +
                               "." + t.table);
        }
    }
    uint64_t metaLen = r.lenenc();
    if (!r.has(metaLen)) {
        return fail(h, "short TABLE_MAP metadata");
    }
    PacketReader m(r.here(), metaLen);
    r.skip(metaLen);
    for (auto& c : t.columns) {
        readMetadata(m, c);
    }
    if (!m.ok()) {
        return fail(h, "short TABLE_MAP metadata");
    }
    const size_t bitmap = (count + 7) / 8;
    if (!r.has(bitmap)) {
        return fail(h, "short TABLE_MAP null bitmap");
    }
    for (size_t i = 0; i < count; ++i) {
        t.columns[i].nullable = ((r.here()[i / 8] >> (i % 8)) & 1) != 0;
    }
    r.skip(bitmap);
    while (r.ok() && r.left() > 0) {
        auto type = static_cast<uint8_t>(r.le(1));
        uint64_t flen = r.lenenc();
        if (!r.has(flen)) {
            return fail(h, "short TABLE_MAP optional metadata");
        }
        PacketReader f(r.here(), flen);
        r.skip(flen);
        switch (type) {
            case kSignedness: {
                size_t k = 0;
                for (auto& c : t.columns) {
                    if (isNumeric(c.type)) {
                        if (!f.has(k / 8 + 1)) {
                            break;
                        }
                        c.isUnsigned = ((f.here()[k / 8] >> (7 - k % 8)) & 1) != 0;
                        ++k;
                    }
                }
                t.signs = true;
                break;
            }
            case kDefaultCharset:
            case kColumnCharset: {
                std::vector<uint32_t> coll;
                for (auto& c : t.columns) {
                    if (isCharacter(c)) {
                        coll.push_back(0);
                    }
                }
                if (type == kDefaultCharset) {
                    auto def = static_cast<uint32_t>(f.lenenc());
                    std::fill(coll.begin(), coll.end(), def);
                    while (f.ok() && f.left() > 0) {
                        uint64_t idx = f.lenenc();
                        auto cs = static_cast<uint32_t>(f.lenenc());
                        if (f.ok() && idx < coll.size()) {
                            coll[idx] = cs;
                        }
                    }
                } else {
                    for (auto& cs : coll) {
                        cs = static_cast<uint32_t>(f.lenenc());
                    }
                }
                size_t k = 0;
                for (auto& c : t.columns) {
                    if (isCharacter(c)) {
                        c.binary = coll[k++] == kBinaryCollation;
                    }
                }
                t.charset = true;
                break;
            }
            case kColumnName:
                for (auto& c : t.columns) {
                    c.name = f.lenencString(256);
                }
                t.named = f.ok();
                break;
            case kSetStrValue:
            case kEnumStrValue:
                for (auto& c : t.columns) {
                    if (c.realType == (type == kSetStrValue ? mysql::kTypeSet : mysql::kTypeEnum)) {
                        uint64_t k = f.lenenc();
                        for (uint64_t i = 0; i < k && f.ok() && i < 65536; ++i) {
                            c.labels.push_back(f.lenencString(1024));
                        }
                    }
                }
                t.labels = true;
                break;
            case kSimplePrimaryKey:
            case kPrimaryKeyWithPrefix:
                while (f.ok() && f.left() > 0) {
                    uint64_t idx = f.lenenc();
                    if (type == kPrimaryKeyWithPrefix) {
                        f.lenenc();
                    }
                    if (f.ok() && idx < count) {
                        t.columns[idx].key = true;
                        t.keyed = true;
                    }
                }
                break;
            default:  // geometry types, ENUM/SET charsets, visibility: not needed for values
                break;
        }
    }
    if (!t.named) {
        for (size_t i = 0; i < count; ++i) {
            t.columns[i].name = "@" + std::to_string(i + 1);
        }
    }
    if (!t.named && complete_ != nullptr) {
        complete_(completeCtx_, t);
    }
    if (!t.keyed) {
        for (auto& c : t.columns) {
            c.key = true;  // no primary key: every column identifies the row
        }
    }
    if (tables_.size() >= kMaxTablesHeld) {
        tables_.clear();
    }
    tables_[t.id] = std::move(t);
    return true;
}

bool Decoder::rows(const EventHeader& h, const uint8_t* d, size_t n) {
    const uint8_t type = h.type;
    const bool v2 = type >= kWriteRowsV2 && type <= kDeleteRowsV2;
    const bool compressed = type >= kWriteRowsCompressedV1;
    const bool compressedV2 = type >= kWriteRowsCompressed;
    RowKind kind;
    switch (type) {
        case kWriteRowsV1:
        case kWriteRowsV2:
        case kWriteRowsCompressedV1:
        case kWriteRowsCompressed:
            kind = RowKind::Insert;
            break;
        case kUpdateRowsV1:
        case kUpdateRowsV2:
        case kUpdateRowsCompressedV1:
        case kUpdateRowsCompressed:
            kind = RowKind::Update;
            break;
        default:
            kind = RowKind::Delete;
            break;
    }
    stats_.rowEvents.fetch_add(1, std::memory_order_relaxed);
    PacketReader r(d, n);
    const size_t ph = postHeader(type, v2 || compressedV2 ? 10 : 8);
    uint64_t tableId = r.le(ph == 6 ? 4 : 6);
    auto flags = static_cast<uint16_t>(r.le(2));
    if (v2 || compressedV2) {
        uint64_t extra = r.le(2);
        r.skip(extra >= 2 ? extra - 2 : 0);
    }
    uint64_t width = r.lenenc();
    if (!r.ok()) {
        return fail(h, "short rows event");
    }
    auto it = tables_.find(tableId);
    if (it == tables_.end()) {
        return fail(h, "rows of table id " + std::to_string(tableId) + " without its TABLE_MAP");
    }
    const TableMap& t = it->second;
    if (width != t.columns.size()) {
        return fail(h, "rows of " + std::to_string(width) + " columns for " + t.schema + "." +
                           t.table + " mapped with " + std::to_string(t.columns.size()));
    }
    const size_t bitmap = (width + 7) / 8;
    if (!r.has(bitmap)) {
        return fail(h, "short rows event");
    }
    const uint8_t* presentBefore = r.here();
    r.skip(bitmap);
    const uint8_t* presentAfter = presentBefore;
    if (kind == RowKind::Update) {
        if (!r.has(bitmap)) {
            return fail(h, "short rows event");
        }
        presentAfter = r.here();
        r.skip(bitmap);
    }
    const bool wanted = filter_ == nullptr || filter_(filterCtx_, t.schema, t.table);
    if (!wanted) {
        stats_.skippedRows.fetch_add(1, std::memory_order_relaxed);
    } else {
        const uint8_t* data = r.here();
        size_t dataLen = r.left();
        if (compressed) {
            if (!uncompress(data, dataLen, inflated_, kMaxInflated)) {
                return fail(h, "damaged compressed rows event");
            }
            data = reinterpret_cast<const uint8_t*>(inflated_.data());
            dataLen = inflated_.size();
        }
        PacketReader rr(data, dataLen);
        std::string why;
        auto image = [&](const uint8_t* present, Image& img) {
            img.clear();
            size_t npresent = 0;
            for (size_t i = 0; i < width; ++i) {
                npresent += (present[i / 8] >> (i % 8)) & 1;
            }
            const size_t nullBytes = (npresent + 7) / 8;
            if (!rr.has(nullBytes)) {
                why = "row image past the end of the event";
                return false;
            }
            const uint8_t* nulls = rr.here();
            rr.skip(nullBytes);
            size_t k = 0;
            for (size_t i = 0; i < width; ++i) {
                if (((present[i / 8] >> (i % 8)) & 1) != 0) {
                    if (((nulls[k / 8] >> (k % 8)) & 1) != 0) {
                        img.text += "null";
                    } else if (!appendValue(rr, t.columns[i], img.text, why)) {
                        why = "column " + t.columns[i].name + ": " + why;
                        return false;
                    }
                    ++k;
                }
                img.end.push_back(static_cast<uint32_t>(img.text.size()));
            }
            return true;
        };
        while (rr.ok() && rr.left() > 0) {
            // a row whose images name no column reads no byte: garbage (a server always logs
            // at least the key), and without this check the loop would never end
            const size_t left = rr.left();
            bool ok = true;
            if (kind == RowKind::Insert) {
                before_.clear();
                ok = image(presentBefore, after_);
            } else if (kind == RowKind::Delete) {
                after_.clear();
                ok = image(presentBefore, before_);
            } else {
                ok = image(presentBefore, before_) && image(presentAfter, after_);
            }
            if (ok && rr.left() == left) {
                why = "row image of no column";
                ok = false;
            }
            if (!ok) {
                return fail(h, t.schema + "." + t.table + ": " + why);
            }
            stats_.rows.fetch_add(1, std::memory_order_relaxed);
            handler_.row(h, t, kind, before_, after_, rowIndex_++);
        }
    }
    (void)flags;  // STMT_END_F: the maps are dropped at the commit instead
    return true;
}

}  // namespace mp::binlog
