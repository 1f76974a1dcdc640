// SPDX-License-Identifier: Apache-2.0
#include "session.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <string_view>
#include <vector>

#include "params.hpp"

namespace mp::mysql {

namespace {

// Capability flags (client and server).
constexpr uint32_t kClientMysql = 1;  // unset by MariaDB servers: extended caps present
constexpr uint32_t kConnectWithDb = 8;
constexpr uint32_t kCompress = 32;
constexpr uint32_t kProtocol41 = 512;
constexpr uint32_t kSsl = 2048;
constexpr uint32_t kSecureConnection = 32768;
constexpr uint32_t kPluginAuthLenenc = 1u << 21;
constexpr uint32_t kSessionTrack = 1u << 23;
constexpr uint32_t kDeprecateEof = 1u << 24;
constexpr uint32_t kQueryAttributes = 1u << 27;
// MariaDB extended capabilities (bits 32..63, sent in otherwise reserved bytes).
constexpr uint32_t kMariaCacheMetadata = 1u << 4;
// Execute parameter blocks up to this size are kept undecoded per pending command (see
// ExecuteParams); larger ones are decoded at once, each value cut to 256 bytes.
constexpr size_t kMaxKeptParamBytes = 4096;
// Server status flags.
constexpr uint16_t kMoreResults = 0x0008;
constexpr uint16_t kCursorExists = 0x0040;
constexpr uint16_t kSessionStateChanged = 0x4000;
// Session-state change types (OK packets under CLIENT_SESSION_TRACK).
constexpr uint8_t kTrackSchema = 1;

// A bounds-checked reader over a packet's kept bytes.
class Reader {
  public:
    Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
    bool ok() const { return ok_; }
    size_t left() const { return ok_ ? n_ - pos_ : 0; }
    const uint8_t* here() const { return d_ + pos_; }
    void skip(size_t k) {
        if (!ok_ || k > n_ - pos_) {
            ok_ = false;
            return;
        }
        pos_ += k;
    }
    uint64_t le(size_t k) {
        if (!ok_ || k > n_ - pos_) {
            ok_ = false;
            return 0;
        }
        const uint8_t* p = d_ + pos_;
        pos_ += k;
        // The widths the protocol uses, without a loop (le() runs for every field read).
        switch (k) {
            case 1:
                return p[0];
            case 2:
                return p[0] | (static_cast<uint64_t>(p[1]) << 8);
            case 4:
                return p[0] | (static_cast<uint64_t>(p[1]) << 8) |
                       (static_cast<uint64_t>(p[2]) << 16) | (static_cast<uint64_t>(p[3]) << 24);
            default: {
                uint64_t v = 0;
                for (size_t i = 0; i < k; ++i) {
                    v |= static_cast<uint64_t>(p[i]) << (8 * i);
                }
                return v;
            }
        }
    }
    uint64_t lenenc() {
        uint64_t first = le(1);
        if (first < 0xfb) {
            return first;
        }
        if (first == 0xfc) {
            return le(2);
        }
        if (first == 0xfd) {
            return le(3);
        }
        if (first == 0xfe) {
            return le(8);
        }
        ok_ = false;  // 0xfb (NULL) and 0xff are not lengths
        return 0;
    }
    /// A length-encoded string, cut to `max` bytes (the whole length is consumed).
    std::string lenencString(size_t max) {
        uint64_t len = lenenc();
        if (!ok_ || len > n_ - pos_) {
            ok_ = false;
            return "";
        }
        std::string s(reinterpret_cast<const char*>(d_ + pos_),
                      std::min(static_cast<size_t>(len), max));
        pos_ += static_cast<size_t>(len);
        return s;
    }
    std::string nulString(size_t max) {
        if (!ok_) {
            return "";
        }
        const void* end = std::memchr(d_ + pos_, 0, n_ - pos_);
        size_t len = end != nullptr ? static_cast<const uint8_t*>(end) - (d_ + pos_) : n_ - pos_;
        std::string s(reinterpret_cast<const char*>(d_ + pos_), std::min(len, max));
        pos_ += len + (end != nullptr ? 1 : 0);
        return s;
    }
    void restInto(std::string& out, size_t max) {
        out.clear();
        if (ok_) {
            out.append(reinterpret_cast<const char*>(d_ + pos_), std::min(n_ - pos_, max));
            pos_ = n_;
        }
    }
    std::string rest(size_t max) {
        if (!ok_) {
            return "";
        }
        std::string s(reinterpret_cast<const char*>(d_ + pos_), std::min(n_ - pos_, max));
        pos_ = n_;
        return s;
    }

  private:
    const uint8_t* d_;
    size_t n_;
    size_t pos_ = 0;
    bool ok_ = true;
};

bool noResponse(uint8_t cmd) {
    return cmd == kQuit || cmd == kStmtClose || cmd == kStmtSendLongData;
}

// The database a plain `USE name` statement selects, backquoted or not, with an optional ';'
// ("" when the statement is anything else).
std::string useStatementSchema(std::string_view sql) {
    const size_t n = sql.size();
    size_t i = 0;
    auto space = [&] {
        while (i < n && std::isspace(static_cast<unsigned char>(sql[i])) != 0) {
            ++i;
        }
    };
    space();
    if (n - i < 4 || (sql[i] | 0x20) != 'u' || (sql[i + 1] | 0x20) != 's' ||
        (sql[i + 2] | 0x20) != 'e' || std::isspace(static_cast<unsigned char>(sql[i + 3])) == 0) {
        return "";
    }
    i += 3;
    space();
    std::string name;
    if (i < n && sql[i] == '`') {
        for (++i;; ++i) {
            if (i >= n) {
                return "";  // unterminated
            }
            if (sql[i] == '`') {
                if (i + 1 < n && sql[i + 1] == '`') {
                    name += '`';
                    ++i;
                    continue;
                }
                ++i;
                break;
            }
            name += sql[i];
        }
    } else {
        while (i < n) {
            auto c = static_cast<unsigned char>(sql[i]);
            if (std::isalnum(c) == 0 && c != '_' && c != '$' && c < 0x80) {
                break;
            }
            name += sql[i++];
        }
    }
    space();
    if (i < n && sql[i] == ';') {
        ++i;
        space();
    }
    return i == n && name.size() <= 256 ? name : "";
}

uint32_t le24(const uint8_t* p) { return p[0] | (p[1] << 8) | (static_cast<uint32_t>(p[2]) << 16); }

// A whole v10 server greeting at the start of `p`: sequence 0, protocol 10, a printable
// NUL-terminated version that starts with a digit, then at least the connection id, the first
// 8 scramble bytes, the filler and the capabilities.
bool looksLikeGreeting(const uint8_t* p, size_t n) {
    if (n < 5) {
        return false;
    }
    uint32_t len = le24(p);
    if (p[3] != 0 || len + 4 > n || len < 2 || p[4] != 10 || p[5] < '0' || p[5] > '9') {
        return false;
    }
    const uint8_t* v = p + 5;
    const uint8_t* end = p + 4 + len;
    size_t i = 0;
    for (; v + i < end && v[i] != 0; ++i) {
        if (v[i] < 0x20 || v[i] > 0x7e || i >= 64) {
            return false;
        }
    }
    return v + i < end && static_cast<size_t>(end - (v + i + 1)) >= 4 + 8 + 1 + 2;
}

// Skips one binary-protocol value of MySQL type `type`; false for a type that is never sent.
bool skipBinaryValue(Reader& r, uint8_t type) {
    switch (type) {
        case 6:  // NULL
            return true;
        case 1:  // TINY
            r.skip(1);
            return r.ok();
        case 2:   // SHORT
        case 13:  // YEAR
            r.skip(2);
            return r.ok();
        case 3:  // LONG
        case 4:  // FLOAT
        case 9:  // INT24
            r.skip(4);
            return r.ok();
        case 5:  // DOUBLE
        case 8:  // LONGLONG
            r.skip(8);
            return r.ok();
        case 7:   // TIMESTAMP
        case 10:  // DATE
        case 11:  // TIME
        case 12:  // DATETIME
        case 14:  // NEWDATE
            r.skip(static_cast<size_t>(r.le(1)));
            return r.ok();
        case 0:    // DECIMAL
        case 15:   // VARCHAR
        case 16:   // BIT
        case 242:  // VECTOR
        case 245:  // JSON
        case 246:  // NEWDECIMAL
        case 247:  // ENUM
        case 248:  // SET
        case 249:  // TINY_BLOB
        case 250:  // MEDIUM_BLOB
        case 251:  // LONG_BLOB
        case 252:  // BLOB
        case 253:  // VAR_STRING
        case 254:  // STRING
        case 255:  // GEOMETRY
            r.skip(static_cast<size_t>(r.lenenc()));
            return r.ok();
        default:
            return false;
    }
}

// COM_QUERY with CLIENT_QUERY_ATTRIBUTES: parameter count, parameter set count, then for a
// non-zero count a NULL bitmap, the new-params flag, (type, name) per parameter and the
// non-NULL values. Leaves `r` at the SQL text; false when the block cannot be walked.
bool skipQueryAttributes(Reader& r) {
    uint64_t params = r.lenenc();
    r.lenenc();  // parameter sets (always 1)
    if (!r.ok() || params == 0) {
        return r.ok();
    }
    if (params > r.left()) {
        return false;
    }
    size_t bitmapLen = static_cast<size_t>((params + 7) / 8);
    if (bitmapLen > r.left()) {
        return false;
    }
    std::vector<uint8_t> nulls(r.here(), r.here() + bitmapLen);
    r.skip(bitmapLen);
    if (r.le(1) != 1) {
        return false;  // without types the values cannot be walked
    }
    std::vector<uint8_t> types(static_cast<size_t>(params));
    for (auto& t : types) {
        t = static_cast<uint8_t>(r.le(2) & 0xff);  // the high byte is the unsigned flag
        r.skip(static_cast<size_t>(r.lenenc()));   // name
    }
    for (size_t i = 0; i < types.size() && r.ok(); ++i) {
        if ((nulls[i / 8] & (1u << (i % 8))) == 0 && !skipBinaryValue(r, types[i])) {
            return false;
        }
    }
    return r.ok();
}

}  // namespace

namespace {
std::string makeCommandName(uint8_t cmd) {
    static const char* const kNames[] = {
        "COM_SLEEP",
        "COM_QUIT",
        "COM_INIT_DB",
        "COM_QUERY",
        "COM_FIELD_LIST",
        "COM_CREATE_DB",
        "COM_DROP_DB",
        "COM_REFRESH",
        "COM_SHUTDOWN",
        "COM_STATISTICS",
        "COM_PROCESS_INFO",
        "COM_CONNECT",
        "COM_PROCESS_KILL",
        "COM_DEBUG",
        "COM_PING",
        "COM_TIME",
        "COM_DELAYED_INSERT",
        "COM_CHANGE_USER",
        "COM_BINLOG_DUMP",
        "COM_TABLE_DUMP",
        "COM_CONNECT_OUT",
        "COM_REGISTER_SLAVE",
        "COM_STMT_PREPARE",
        "COM_STMT_EXECUTE",
        "COM_STMT_SEND_LONG_DATA",
        "COM_STMT_CLOSE",
        "COM_STMT_RESET",
        "COM_SET_OPTION",
        "COM_STMT_FETCH",
        "COM_DAEMON",
        "COM_BINLOG_DUMP_GTID",
        "COM_RESET_CONNECTION",
    };
    if (cmd < sizeof kNames / sizeof kNames[0]) {
        return kNames[cmd];
    }
    if (cmd == kStmtBulkExecute) {
        return "COM_STMT_BULK_EXECUTE";
    }
    static const char* hex = "0123456789abcdef";
    return std::string("COM_UNKNOWN_0x") + hex[cmd >> 4] + hex[cmd & 15];
}
}  // namespace

const std::string& commandName(uint8_t cmd) {
    static const auto kAll = [] {
        std::array<std::string, 256> names;
        for (size_t c = 0; c < names.size(); ++c) {
            names[c] = makeCommandName(static_cast<uint8_t>(c));
        }
        return names;
    }();
    return kAll[cmd];
}

namespace {
// One entry per key while referenced; the map's keys are views into the entries themselves.
template <class Map, class KeyOf, class Make>
auto* acquireIn(Map& map, const typename Map::key_type& key, KeyOf keyOf, Make make) {
    auto it = map.find(key);
    if (it == map.end()) {
        auto entry = make();
        auto stored = keyOf(*entry);
        it = map.emplace(stored, std::move(entry)).first;
    }
    ++it->second->refs;
    return it->second.get();
}
template <class Map>
void releaseIn(Map& map, const typename Map::key_type& key) {
    auto it = map.find(key);
    if (it != map.end() && --it->second->refs == 0) {
        map.erase(it);
    }
}
std::string_view bytesKey(const std::vector<uint8_t>& b) {
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}
}  // namespace

const StatementTexts::Text* StatementTexts::acquire(const std::string& sql, const std::string& fp,
                                                    uint64_t fpId) {
    return acquireIn(
        texts_, Key{fpId, sql},
        [](const Text& t) {
            return Key{t.fp.id, t.sql};
        },
        [&] {
            return std::make_unique<Text>(Text{sql, Fingerprint{fp, fpId}, 0});
        });
}

void StatementTexts::release(const Text* t) {
    if (t != nullptr) {
        releaseIn(texts_, Key{t->fp.id, t->sql});
    }
}

const StatementTexts::Types* StatementTexts::acquireTypes(const std::vector<uint8_t>& bytes) {
    return acquireIn(
        types_, bytesKey(bytes), [](const Types& t) { return bytesKey(t.bytes); },
        [&] {
            return std::make_unique<Types>(Types{bytes, 0});
        });
}

void StatementTexts::release(const Types* t) {
    if (t != nullptr) {
        releaseIn(types_, bytesKey(t->bytes));
    }
}

Session::Session(SessionLimits limits, bool midstream, Emit emit, StatementTexts* texts)
    : limits_(limits),
      emit_(std::move(emit)),
      phase_(midstream ? Phase::Resync : Phase::Greeting),
      ownTexts_(texts == nullptr ? std::make_unique<StatementTexts>() : nullptr),
      texts_(texts != nullptr ? texts : ownTexts_.get()) {}

Session::~Session() { forgetStatements(); }

Session::Statement* Session::findStatement(uint32_t id) {
    if (idsAscending_) {
        auto it = std::lower_bound(statements_.begin(), statements_.end(), id,
                                   [](const Statement& s, uint32_t v) { return s.id < v; });
        return it != statements_.end() && it->id == id ? &*it : nullptr;
    }
    for (Statement& s : statements_) {
        if (s.id == id) {
            return &s;
        }
    }
    return nullptr;
}

std::vector<std::pair<uint32_t, std::vector<bool>>>::iterator Session::findLongData(uint32_t id) {
    return std::find_if(longData_.begin(), longData_.end(),
                        [id](const auto& l) { return l.first == id; });
}

void Session::eraseStatement(Statement* s) {
    texts_->release(s->text);
    texts_->release(s->types);
    if (auto l = findLongData(s->id); l != longData_.end()) {
        longData_.erase(l);
    }
    statements_.erase(statements_.begin() + (s - statements_.data()));
    idsAscending_ = idsAscending_ || statements_.empty();
}

void Session::data(uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) {
    if (phase_ == Phase::Tls || dir > 1) {
        return;
    }
    bool firstServerData = dir == 1 && !serverSeen_;
    serverSeen_ = serverSeen_ || dir == 1;
    if (phase_ == Phase::Resync) {
        if (firstServerData && stats_.resyncs == 0 && looksLikeGreeting(p, n)) {
            // Seen mid-stream (no SYN), but from the server's greeting on: decode the login.
            phase_ = Phase::Greeting;
        } else {
            resync(dir, p, n, ts);
            return;
        }
    }
    if (dir == 1) {
        framer_[1].setRowRun(&rowRun_);
        armRowRun();  // the rows of the current response, if it is in them
    }
    bool ok = framer_[dir].feed(p, n, ts, [&](const Packet& pk) {
        ++stats_.packetsIn;
        if (dir == 0) {
            clientPacket(pk);
            return;
        }
        // Fast path for the bulk of a response, column definitions and rows: inline here, no
        // call per packet. Anything that may end a result (0xfe, 0xff) takes the full path.
        if (phase_ == Phase::Command && !pending_.empty() && pk.kept > 0 && pk.data[0] < 0xfe) {
            Pending& pc = pending_.front();
            if (pc.state == Resp::Rows) {
                ++pc.tx.rowsReturned;
                pc.tx.responseBytes += pk.length + 4;
                return;
            }
            if (pc.state == Resp::Columns) {
                pc.tx.responseBytes += pk.length + 4;
                if (--pc.left == 0) {
                    pc.state = deprecateEof_ ? Resp::Rows : Resp::ColumnsEof;
                    armRowRun();
                }
                return;
            }
        }
        serverPacket(pk);
        armRowRun();  // the response may have moved on (rows begin, or it ended)
    });
    rowRun_.rows = nullptr;  // the pending queue may grow before the next server data
    if (!ok) {
        stats_.decompressErrors = framer_[0].decompressErrors() + framer_[1].decompressErrors();
        lose(ts);
    }
}

void Session::armRowRun() {
    if (phase_ == Phase::Command && !pending_.empty() && pending_.front().state == Resp::Rows) {
        Pending& pc = pending_.front();
        rowRun_ = RowRun{&pc.tx.rowsReturned, &pc.tx.responseBytes, &stats_.packetsIn};
    } else {
        rowRun_.rows = nullptr;
    }
}

void Session::gap(uint32_t /*dir*/, uint64_t /*len*/, uint64_t ts) {
    if (phase_ == Phase::Tls) {
        return;
    }
    lose(ts);
}

void Session::close(uint64_t ts) {
    while (!pending_.empty()) {
        ++stats_.lostResponses;
        finish(Outcome::Lost, ts);
    }
}

void Session::lose(uint64_t ts) {
    // Bytes are missing: every command waiting for its response has lost it, and packet
    // boundaries are unknown until a client command is recognised again.
    while (!pending_.empty()) {
        ++stats_.lostResponses;
        finish(Outcome::Lost, ts);
    }
    framer_[0].reset();
    framer_[1].reset();
    if (phase_ == Phase::Command || phase_ == Phase::Auth || phase_ == Phase::Login ||
        phase_ == Phase::Greeting) {
        ++stats_.resyncs;
        phase_ = Phase::Resync;
    }
}

void Session::resync(uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) {
    // Server bytes are skipped until the client sends something that is, from its first byte,
    // one complete plausible command packet (clients write one command per segment). On the
    // compressed protocol that packet comes in a stored frame (uncompressed length 0: small
    // commands are not compressed), which also tells a connection seen mid-stream that it is
    // compressed.
    if (dir != 0 || n < 5) {
        return;
    }
    const uint8_t* q = p;
    size_t m = n;
    bool stored = n >= 7 + 5 && le24(p) + 7 == n && p[3] == 0 && le24(p + 4) == 0;
    if (stored) {
        q = p + 7;
        m = n - 7;
    } else if (framer_[0].compressed()) {
        return;
    }
    uint32_t len = le24(q);
    uint8_t seq = q[3];
    uint8_t cmd = q[4];
    bool known = cmd <= kResetConnection || cmd == kStmtBulkExecute;
    if (seq != 0 || len == 0 || len + 4 > m || !known || cmd == kSleep || cmd == kConnect) {
        return;
    }
    if (stored) {
        framer_[0].setCompressed(true);
        framer_[1].setCompressed(true);
        login_.compressed = true;
    }
    phase_ = Phase::Command;
    framer_[1].reset();
    data(dir, p, n, ts);
}

void Session::clientPacket(const Packet& p) {
    switch (phase_) {
        case Phase::Greeting:
        case Phase::Login:
            handshakeResponse(p);
            return;
        case Phase::Auth:
            return;  // auth data (scrambles, public keys): nothing to learn
        case Phase::Command:
            break;
        default:
            return;
    }
    if (!pending_.empty()) {
        Pending& front = pending_.front();
        if (front.state == Resp::Infile) {
            front.tx.requestBytes += p.length + 4;
            if (p.length == 0) {
                front.state = Resp::InfileResult;  // the empty packet ends the file
            }
            return;
        }
        if (front.state == Resp::Auth) {
            return;  // change-user auth data
        }
    }
    if (p.seq != 0 || p.kept == 0) {
        ++stats_.unexpectedPackets;
        return;
    }
    command(p);
}

void Session::serverPacket(const Packet& p) {
    switch (phase_) {
        case Phase::Greeting:
            greeting(p);
            return;
        case Phase::Login:
        case Phase::Auth:
            if (p.kept > 0 && p.data[0] == 0xff) {
                Transaction t;
                parseErr(t, p.data, p.kept);
                login_.failed = true;
                login_.errorCode = t.errorCode;
                phase_ = Phase::Resync;  // the server closes the connection
            } else if (p.kept > 0 && p.data[0] == 0x00 && phase_ == Phase::Auth) {
                phase_ = Phase::Command;
                if (pendingCompression_) {
                    framer_[0].setCompressed(true);
                    framer_[1].setCompressed(true);
                    login_.compressed = true;
                }
            }
            return;
        case Phase::Command:
            break;
        default:
            return;
    }
    if (pending_.empty()) {
        ++stats_.unexpectedPackets;
        return;
    }
    Transaction& tx = pending_.front().tx;
    if (tx.firstResponseTs == 0) {
        tx.firstResponseTs = p.ts;
    }
    tx.responseBytes += p.length + 4;
    respond(pending_.front(), p);
}

void Session::greeting(const Packet& p) {
    Reader r(p.data, p.kept);
    uint64_t proto = r.le(1);
    if (proto == 0xff) {  // refused before any handshake (too many connections, blocked host)
        Transaction t;
        parseErr(t, p.data, p.kept);
        login_.failed = true;
        login_.errorCode = t.errorCode;
        phase_ = Phase::Resync;
        return;
    }
    login_.serverVersion = r.nulString(64);
    login_.connectionId = static_cast<uint32_t>(r.le(4));
    r.skip(8 + 1);
    serverCaps_ = static_cast<uint32_t>(r.le(2));
    if (r.left() >= 16) {
        r.skip(1 + 2);  // charset, status
        serverCaps_ |= static_cast<uint32_t>(r.le(2)) << 16;
        r.skip(1 + 6);  // auth data length, filler
        uint32_t ext = static_cast<uint32_t>(r.le(4));
        serverExt_ = (serverCaps_ & kClientMysql) == 0 ? ext : 0;
    }
    phase_ = Phase::Login;
}

void Session::handshakeResponse(const Packet& p) {
    Reader r(p.data, p.kept);
    uint32_t caps = static_cast<uint32_t>(r.le(2));
    if ((caps & kProtocol41) != 0) {
        Reader r41(p.data, p.kept);
        caps = static_cast<uint32_t>(r41.le(4));
        r41.skip(4 + 1 + 19);
        uint32_t ext =
            p.kept >= 32
                ? static_cast<uint32_t>(p.data[28] | (p.data[29] << 8) | (p.data[30] << 16) |
                                        (static_cast<uint32_t>(p.data[31]) << 24))
                : 0;
        r41.skip(4);
        clientCaps_ = caps;
        clientExt_ = (caps & kClientMysql) == 0 ? ext : 0;
        if (p.length == 32 && (caps & kSsl) != 0) {
            login_.tls = true;
            ++stats_.tlsSessions;
            phase_ = Phase::Tls;  // the rest is TLS records: counted, skipped
            return;
        }
        login_.user = r41.nulString(128);
        if ((caps & kPluginAuthLenenc) != 0) {
            r41.skip(static_cast<size_t>(r41.lenenc()));
        } else if ((caps & kSecureConnection) != 0) {
            r41.skip(static_cast<size_t>(r41.le(1)));
        } else {
            r41.nulString(256);
        }
        if ((caps & kConnectWithDb) != 0 && r41.ok()) {
            login_.schema = r41.nulString(256);
        }
    } else {
        // HandshakeResponse320 (4.0 clients): caps 2, max packet 3, user, auth, [db].
        clientCaps_ = caps;
        r.skip(3);
        login_.user = r.nulString(128);
        r.nulString(256);
        if ((caps & kConnectWithDb) != 0 && r.ok()) {
            login_.schema = r.nulString(256);
        }
    }
    uint32_t both = clientCaps_ & serverCaps_;
    deprecateEof_ = (both & kDeprecateEof) != 0;
    cacheMetadata_ = (clientExt_ & serverExt_ & kMariaCacheMetadata) != 0;
    pendingCompression_ = (both & kCompress) != 0;
    phase_ = Phase::Auth;
    ++loginGen_;
}

std::vector<std::string> Transaction::paramValues() const {
    std::vector<std::string> out;
    if (!params.empty()) {
        out = params;
    } else if (executeParams.present) {
        executeParams.decode(out);
    }
    return out;
}

void Transaction::reset(bool keepLogin) {
    command = 0;
    connectionId = 0;
    requestTs = firstResponseTs = responseTs = 0;
    outcome = Outcome::None;
    sql.clear();
    params.clear();
    executeParams.clear();
    fingerprint.clear();
    fingerprintId = 0;
    statementId = 0;
    errorCode = 0;
    sqlState.clear();
    errorMessage.clear();
    rowsReturned = rowsAffected = lastInsertId = 0;
    warnings = statusFlags = 0;
    resultSets = 0;
    requestBytes = responseBytes = 0;
    if (!keepLogin) {
        user.clear();
        schema.clear();
    }
}

Session::Pending& Session::PendingQueue::pushBack() {
    if (n_ == slots_.size()) {
        // One slot first: most clients never pipeline.
        std::vector<Pending> grown(std::max<size_t>(1, slots_.size() * 2));
        for (size_t i = 0; i < n_; ++i) {
            grown[i] = std::move(slots_[(head_ + i) % slots_.size()]);
        }
        slots_ = std::move(grown);
        head_ = 0;
    }
    Pending& pc = slots_[(head_ + n_) % slots_.size()];
    ++n_;
    pc.tx.reset(/*keepLogin=*/true);
    pc.state = Resp::Start;
    pc.columns = pc.left = pc.params = 0;
    pc.binary = pc.cursor = false;
    pc.newSchema.clear();
    return pc;
}

void Session::command(const Packet& p) {
    if (!noResponse(p.data[0]) && pending_.size() >= limits_.maxPending) {
        ++stats_.lostResponses;
        finish(Outcome::Lost, p.ts);
    }
    Pending& pc = pending_.pushBack();
    Transaction& tx = pc.tx;
    tx.command = p.data[0];
    tx.connectionId = login_.connectionId;
    tx.requestTs = p.firstTs != 0 ? p.firstTs : p.ts;
    tx.requestBytes = p.length + 4;
    if (pc.loginGen != loginGen_) {  // a reused slot keeps the strings of its last command
        tx.user = login_.user;
        tx.schema = login_.schema;
        pc.loginGen = loginGen_;
    }
    Reader r(p.data + 1, p.kept - 1);
    switch (tx.command) {
        case kQuery:
            if ((clientCaps_ & serverCaps_ & kQueryAttributes) != 0 && !skipQueryAttributes(r)) {
                r = Reader(p.data + 1, 0);  // attributes not understood: SQL not recovered
            }
            [[fallthrough]];
        case kStmtPrepare: {
            // The fingerprint sees the whole statement (as kept by the framer), the sample only
            // its first max_sql bytes.
            std::string_view full(reinterpret_cast<const char*>(r.here()), r.left());
            tx.fingerprintId = threadFingerprintCache().fingerprintInto(full, tx.fingerprint);
            r.restInto(tx.sql, limits_.maxSql);
            break;
        }
        case kInitDb:
            r.restInto(tx.sql, std::min<size_t>(limits_.maxSql, 256));  // the schema
            break;
        case kStmtExecute:
        case kStmtBulkExecute:
        case kStmtFetch:
        case kStmtClose:
        case kStmtReset:
        case kStmtSendLongData: {
            uint32_t id = static_cast<uint32_t>(r.le(4));
            // MariaDB's id 0xffffffff is "the statement just prepared": the newest prepare
            // still waiting for its answer (mariadb_stmt_execute_direct sends both at once),
            // else the last one answered.
            const Pending* direct = nullptr;
            if (id == 0xffffffff) {
                for (size_t i = pending_.size() - 1; i-- > 0;) {
                    if (pending_.at(i).tx.command == kStmtPrepare) {
                        direct = &pending_.at(i);
                        break;
                    }
                }
                if (direct == nullptr) {
                    id = lastPrepared_;
                }
            }
            tx.statementId = id;
            Statement* st = direct != nullptr ? nullptr : findStatement(id);
            if (direct != nullptr) {
                // Its parameter count comes with the prepare's answer: the values of this
                // execute are not decoded.
                tx.sql = direct->tx.sql;
                tx.fingerprint = direct->tx.fingerprint;
                tx.fingerprintId = direct->tx.fingerprintId;
            } else if (st != nullptr) {
                tx.sql = st->text->sql;
                tx.fingerprint = st->text->fp.text;
                tx.fingerprintId = st->text->fp.id;
            } else if (tx.command == kStmtExecute || tx.command == kStmtBulkExecute) {
                ++stats_.unknownStatements;
            }
            if (tx.command == kStmtExecute) {
                auto flags = static_cast<uint8_t>(r.le(1));
                pc.cursor = (flags & 0x07) != 0;
                r.skip(4);  // iteration count
                // Parameter values for samples (with query attributes: those skipped).
                // They are kept undecoded when small (formatted only for a sample), else
                // decoded now, each value cut to 256 bytes.
                if (st != nullptr && r.ok()) {
                    QueryAttributes qa{(flags & 0x08) != 0};  // PARAMETER_COUNT_AVAILABLE
                    const QueryAttributes* withQa =
                        (clientCaps_ & serverCaps_ & kQueryAttributes) != 0 ? &qa : nullptr;
                    static const std::vector<bool> kNone;
                    auto sent = findLongData(st->id);
                    const std::vector<bool>& longData =
                        sent != longData_.end() ? sent->second : kNone;
                    static const std::vector<uint8_t> kUnbound;
                    const std::vector<uint8_t>& bound =
                        st->types != nullptr ? st->types->bytes : kUnbound;
                    // The types this execute binds, if it binds any (most send them only when
                    // they change): an empty scratch stays empty otherwise.
                    boundScratch_.clear();
                    if (r.left() <= kMaxKeptParamBytes) {
                        tx.executeParams.keep(r.here(), r.left(), st->params, bound, longData,
                                              withQa);
                        bindExecuteTypes(r.here(), r.left(), st->params, boundScratch_, withQa);
                    } else {
                        boundScratch_ = bound;  // decoding needs them
                        decodeExecuteParams(r.here(), r.left(), st->params, boundScratch_, longData,
                                            tx.params, 256, withQa);
                        if (boundScratch_ == bound) {
                            boundScratch_.clear();
                        }
                    }
                    if (!boundScratch_.empty() && boundScratch_ != bound) {
                        const StatementTexts::Types* now = texts_->acquireTypes(boundScratch_);
                        texts_->release(st->types);
                        st->types = now;
                    }
                    if (sent != longData_.end()) {
                        longData_.erase(sent);  // sent for this execute only
                    }
                }
            }
            if (tx.command == kStmtSendLongData && st != nullptr) {
                auto param = static_cast<size_t>(r.le(2));
                if (r.ok() && param < st->params) {
                    auto sent = findLongData(st->id);
                    if (sent == longData_.end()) {
                        sent = longData_.insert(longData_.end(), {st->id, {}});
                    }
                    sent->second.resize(st->params);
                    sent->second[param] = true;
                }
            }
            if (tx.command == kStmtClose && st != nullptr) {
                eraseStatement(st);
            }
            pc.binary = true;
            break;
        }
        case kChangeUser:
            // The new user, its auth data, the new default schema (then charset, plugin and
            // attributes). A connection first seen mid-stream has unknown capabilities: every
            // client since 4.1 sends the auth data with a length byte.
            tx.sql = r.nulString(std::min<size_t>(limits_.maxSql, 128));
            if (clientCaps_ == 0 || (clientCaps_ & kSecureConnection) != 0) {
                r.skip(static_cast<size_t>(r.le(1)));
            } else {
                r.nulString(256);
            }
            pc.newSchema = r.ok() ? r.nulString(256) : std::string();
            break;
        default:
            break;
    }
    if (noResponse(tx.command)) {
        emit_(tx);
        pending_.popBack();
    }
}

void Session::forgetStatements() {
    for (Statement& s : statements_) {
        texts_->release(s.text);
        texts_->release(s.types);
    }
    statements_.clear();
    longData_.clear();
    idsAscending_ = true;
}

void Session::userChanged(const std::string& user, const std::string& schema) {
    // COM_CHANGE_USER succeeded: a new session for the server, prepared statements included.
    login_.user = user;
    login_.schema = schema;
    ++loginGen_;
    forgetStatements();
}

bool Session::isEof(const Packet& p) const {
    return p.kept >= 1 && p.data[0] == 0xfe && p.length < 9;
}

uint16_t Session::parseOk(Transaction& tx, const uint8_t* d, size_t n) {
    Reader r(d, n);
    r.skip(1);
    tx.rowsAffected += r.lenenc();
    uint64_t id = r.lenenc();
    if (id != 0) {
        tx.lastInsertId = id;
    }
    uint16_t status = 0;
    if ((clientCaps_ & kProtocol41) != 0 || r.left() >= 4) {
        status = static_cast<uint16_t>(r.le(2));
        tx.warnings = static_cast<uint16_t>(tx.warnings + r.le(2));
    }
    tx.statusFlags |= status;  // the transaction keeps every flag it saw
    // CLIENT_SESSION_TRACK: the info text, then the session-state changes, of which the
    // current schema is kept (a USE, or a procedure that changed it).
    if ((status & kSessionStateChanged) != 0 && (clientCaps_ & serverCaps_ & kSessionTrack) != 0) {
        r.skip(static_cast<size_t>(r.lenenc()));
        uint64_t total = r.lenenc();
        Reader changes(r.here(), std::min<size_t>(r.left(), total));
        while (changes.ok() && changes.left() > 0) {
            auto type = static_cast<uint8_t>(changes.le(1));
            uint64_t len = changes.lenenc();
            Reader item(changes.here(), std::min<size_t>(changes.left(), len));
            changes.skip(static_cast<size_t>(len));
            if (changes.ok() && type == kTrackSchema) {
                std::string schema = item.lenencString(256);
                if (item.ok()) {
                    login_.schema = std::move(schema);
                    ++loginGen_;
                }
            }
        }
    }
    return status;
}

void Session::parseErr(Transaction& tx, const uint8_t* d, size_t n) {
    Reader r(d, n);
    r.skip(1);
    tx.errorCode = static_cast<uint16_t>(r.le(2));
    if (r.left() >= 6 && r.here()[0] == '#') {
        r.skip(1);
        tx.sqlState = std::string(reinterpret_cast<const char*>(r.here()), 5);
        r.skip(5);
    }
    tx.errorMessage = r.rest(512);
}

void Session::finish(Outcome o, uint64_t ts) {
    Transaction& tx = pending_.front().tx;
    tx.outcome = o;
    if (o != Outcome::Lost) {
        tx.responseTs = ts;
    }
    emit_(tx);
    pending_.popFront();
}

void Session::respond(Pending& pc, const Packet& p) {
    Transaction& tx = pc.tx;
    const uint8_t* d = p.data;
    const size_t n = p.kept;
    const uint8_t first = n > 0 ? d[0] : 0;
    // MariaDB progress reports look like errors with code 0xffff: not an answer.
    if (first == 0xff && n >= 3 && d[1] == 0xff && d[2] == 0xff) {
        return;
    }
    switch (pc.state) {
        case Resp::Start: {
            if (first == 0xff) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
                return;
            }
            switch (tx.command) {
                case kStatistics:
                    finish(Outcome::Ok, p.ts);
                    return;
                case kStmtPrepare: {
                    Reader r(d, n);
                    r.skip(1);
                    uint32_t id = static_cast<uint32_t>(r.le(4));
                    pc.columns = r.le(2);
                    pc.params = r.le(2);
                    r.skip(1);
                    tx.warnings = static_cast<uint16_t>(r.le(2));
                    tx.statementId = id;
                    if (Statement* old = findStatement(id); old != nullptr) {
                        // The same id again: the server reused it, this text replaces the old.
                        eraseStatement(old);
                    }
                    if (statements_.size() >= limits_.maxStatements) {
                        eraseStatement(&statements_.front());
                        ++stats_.statementEvictions;
                    }
                    if (!statements_.empty() && statements_.back().id >= id) {
                        idsAscending_ = false;
                    }
                    if (statements_.size() == statements_.capacity()) {
                        // Grown by a quarter, not doubled: 10,000 connections hold these.
                        statements_.reserve(statements_.size() + statements_.size() / 4 + 4);
                    }
                    Statement& st = statements_.emplace_back();
                    st.id = id;
                    st.params = static_cast<uint16_t>(pc.params);
                    st.text = texts_->acquire(tx.sql, tx.fingerprint, tx.fingerprintId);
                    lastPrepared_ = id;
                    if (pc.params > 0) {
                        pc.state = Resp::PrepareParams;
                        pc.left = pc.params;
                    } else if (pc.columns > 0) {
                        pc.state = Resp::PrepareColumns;
                        pc.left = pc.columns;
                    } else {
                        finish(Outcome::Prepared, p.ts);
                    }
                    return;
                }
                case kFieldList:
                    if (isEof(p)) {
                        finish(Outcome::Ok, p.ts);
                    } else {
                        pc.state = Resp::FieldList;
                    }
                    return;
                case kChangeUser:
                    if (first == 0x00) {
                        parseOk(tx, d, n);
                        userChanged(tx.sql, pc.newSchema);
                        finish(Outcome::Ok, p.ts);
                    } else {
                        pc.state = Resp::Auth;  // auth switch or more data
                    }
                    return;
                case kQuery:
                case kStmtExecute:
                case kStmtBulkExecute:
                case kStmtFetch:
                    break;
                default:
                    if (first == 0x00 && n >= 3) {
                        parseOk(tx, d, n);
                    } else if (isEof(p)) {
                        Reader r(d, n);
                        r.skip(1);
                        tx.warnings = static_cast<uint16_t>(r.le(2));
                        tx.statusFlags |= static_cast<uint16_t>(r.le(2));
                    }
                    if (tx.command == kInitDb) {
                        login_.schema = tx.sql;
                        ++loginGen_;
                    }
                    if (tx.command == kResetConnection) {
                        forgetStatements();
                    }
                    finish(Outcome::Ok, p.ts);
                    return;
            }
            // Query, execute, bulk execute, fetch.
            if (tx.command == kStmtFetch) {
                pc.state = Resp::Rows;
                respond(pc, p);  // this packet is already a row or the EOF
                return;
            }
            if (first == 0x00 && p.length >= 7) {
                uint16_t status = parseOk(tx, d, n);
                // A plain USE without session tracking (or with the server's tracking off).
                if (tx.command == kQuery && tx.resultSets == 0 && !tx.sql.empty() &&
                    ((tx.sql[0] | 0x20) == 'u' ||
                     std::isspace(static_cast<unsigned char>(tx.sql[0])) != 0)) {
                    std::string schema = useStatementSchema(tx.sql);
                    if (!schema.empty()) {
                        login_.schema = std::move(schema);
                        ++loginGen_;
                    }
                }
                if ((status & kMoreResults) != 0 && tx.command != kStmtBulkExecute) {
                    return;  // another result follows
                }
                finish(tx.resultSets > 0 ? Outcome::ResultSet : Outcome::Ok, p.ts);
                return;
            }
            if (first == 0xfb && tx.command == kQuery) {
                pc.state = Resp::Infile;
                return;
            }
            Reader r(d, n);
            pc.columns = r.lenenc();
            bool metadata = true;
            if (cacheMetadata_ && r.left() >= 1) {
                metadata = r.le(1) != 0;
            }
            if (!r.ok() || pc.columns == 0) {
                ++stats_.unexpectedPackets;
                finish(Outcome::Lost, p.ts);
                return;
            }
            ++tx.resultSets;
            if (metadata) {
                pc.state = Resp::Columns;
                pc.left = pc.columns;
            } else {
                pc.state = deprecateEof_ ? Resp::Rows : Resp::ColumnsEof;
            }
            return;
        }
        case Resp::Columns:
            if (--pc.left == 0) {
                pc.state = deprecateEof_ ? Resp::Rows : Resp::ColumnsEof;
            }
            return;
        case Resp::ColumnsEof:
            if (first == 0xfe && p.length >= 7 && p.length < 9) {
                // Not an EOF (5 bytes): the OK that ends a result without rows under
                // CLIENT_DEPRECATE_EOF, negotiated before this connection was first seen.
                deprecateEof_ = true;
                pc.state = Resp::Rows;
                respond(pc, p);
                return;
            }
            if (isEof(p)) {
                Reader r(d, n);
                r.skip(1 + 2);
                uint16_t status = static_cast<uint16_t>(r.le(2));
                if ((status & kCursorExists) != 0) {
                    tx.statusFlags |= status;
                    finish(Outcome::ResultSet, p.ts);  // rows come with COM_STMT_FETCH
                    return;
                }
                pc.state = Resp::Rows;
                return;
            }
            pc.state = Resp::Rows;
            respond(pc, p);
            return;
        case Resp::Rows: {
            if (first == 0xff) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
                return;
            }
            bool end =
                deprecateEof_ ? (first == 0xfe && p.length < 0xffffff && p.length >= 7) : isEof(p);
            if (!end) {
                ++tx.rowsReturned;
                return;
            }
            uint16_t status = 0;
            if (deprecateEof_) {
                status = parseOk(tx, d, n);
            } else {
                Reader r(d, n);
                r.skip(1);
                tx.warnings = static_cast<uint16_t>(tx.warnings + r.le(2));
                status = static_cast<uint16_t>(r.le(2));
                tx.statusFlags |= status;
            }
            if ((status & kMoreResults) != 0) {
                pc.state = Resp::Start;  // the next result of a multi-statement or CALL
                return;
            }
            finish(Outcome::ResultSet, p.ts);
            return;
        }
        case Resp::PrepareParams:
            if (--pc.left == 0) {
                if (!deprecateEof_) {
                    pc.state = Resp::PrepareParamsEof;
                } else if (pc.columns > 0) {
                    pc.state = Resp::PrepareColumns;
                    pc.left = pc.columns;
                } else {
                    finish(Outcome::Prepared, p.ts);
                }
            }
            return;
        case Resp::PrepareParamsEof:
            if (pc.columns > 0) {
                pc.state = Resp::PrepareColumns;
                pc.left = pc.columns;
            } else {
                finish(Outcome::Prepared, p.ts);
            }
            return;
        case Resp::PrepareColumns:
            if (--pc.left == 0) {
                if (deprecateEof_) {
                    finish(Outcome::Prepared, p.ts);
                } else {
                    pc.state = Resp::PrepareColumnsEof;
                }
            }
            return;
        case Resp::PrepareColumnsEof:
            finish(Outcome::Prepared, p.ts);
            return;
        case Resp::FieldList:
            if (first == 0xff) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
            } else if (isEof(p)) {
                finish(Outcome::Ok, p.ts);
            }
            return;
        case Resp::Infile:
            ++stats_.unexpectedPackets;  // the server talks while the file is being sent
            return;
        case Resp::InfileResult:
        case Resp::Auth:
            if (first == 0xff) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
            } else if (first == 0x00) {
                parseOk(tx, d, n);
                if (pc.state == Resp::Auth) {
                    userChanged(tx.sql, pc.newSchema);
                }
                finish(Outcome::Ok, p.ts);
            }
            return;
    }
}

}  // namespace mp::mysql
