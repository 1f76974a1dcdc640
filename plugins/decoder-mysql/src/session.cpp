// SPDX-License-Identifier: Apache-2.0
// One MySQL connection, its state machine: packets in from both directions, the handshake and
// login, losing and regaining sync, prepared statements held. The client's commands are read in
// session_command.cpp, the server's responses in session_response.cpp.
#include "session.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <vector>

#include "fingerprint.hpp"

namespace mp::mysql {

namespace {

uint32_t le24(const uint8_t* p) { return p[0] | (p[1] << 8) | (static_cast<uint32_t>(p[2]) << 16); }

// A whole v10 server greeting at the start of `p`: sequence 0, protocol 10, a printable
// NUL-terminated version that starts with a digit, then at least the connection id, the first
// 8 scramble bytes, the filler and the capabilities.
bool looksLikeGreeting(const uint8_t* p, size_t n) {
    if (n < 5) {
        return false;
    }
    uint32_t len = le24(p);
    if (p[3] != 0 || len + 4 > n || len < 2 || p[4] != kProtocolV10 || p[5] < '0' || p[5] > '9') {
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
      texts_(texts != nullptr ? texts : ownTexts_.get()) {
    if (limits_.keepPackets) {
        framer_[0] = Framer(std::max<size_t>(limits_.maxCommandBytes, 1 << 20));
    }
}

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

void Session::assume(const ServerSession* known) {
    if (known == nullptr || phase_ != Phase::Resync || !login_.user.empty()) {
        return;  // a login was seen: the wire knows better
    }
    known_ = known;
    login_.connectionId = known->id;
    login_.user = known->user;
    login_.schema = known->schema;
    ++loginGen_;
}

Session::Statement* Session::adoptKnown(uint32_t id) {
    auto it = known_->statements.find(id);
    if (it == known_->statements.end()) {
        return nullptr;
    }
    std::string fp;
    const uint64_t fpId = threadFingerprintCache().fingerprintInto(it->second, fp);
    std::string sql = it->second.substr(0, limits_.maxSql);
    if (statements_.size() >= limits_.maxStatements) {
        eraseStatement(&statements_.front());
        ++stats_.statementEvictions;
    }
    // In id order where the ids are (the server's were given before the capture's).
    auto at = idsAscending_
                  ? std::lower_bound(statements_.begin(), statements_.end(), id,
                                     [](const Statement& s, uint32_t v) { return s.id < v; })
                  : statements_.end();
    Statement& st = *statements_.insert(at, Statement{});
    st.id = id;
    st.params = 0;  // not known: the execute's values are not decoded
    st.text = texts_->acquire(sql, fp, fpId);
    ++stats_.statementsFromServer;
    return &st;
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
        // call per packet. Anything that may end a result (EOF/OK 0xfe, ERR 0xff) takes the full
        // path.
        if (phase_ == Phase::Command && !pending_.empty() && pk.kept > 0 &&
            pk.data[0] < kEofHeader) {
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
            if (p.kept > 0 && p.data[0] == kErrHeader) {
                Transaction t;
                parseErr(t, p.data, p.kept);
                login_.failed = true;
                login_.errorCode = t.errorCode;
                phase_ = Phase::Resync;  // the server closes the connection
                loginEnded(p.ts);
            } else if (p.kept > 0 && p.data[0] == kOkHeader && phase_ == Phase::Auth) {
                phase_ = Phase::Command;
                if (pendingCompression_) {
                    framer_[0].setCompressed(true);
                    framer_[1].setCompressed(true);
                    login_.compressed = true;
                }
                loginEnded(p.ts);
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
    PacketReader r(p.data, p.kept);
    uint64_t proto = r.le(1);
    if (proto == kErrHeader) {  // refused before any handshake (too many connections, blocked host)
        Transaction t;
        parseErr(t, p.data, p.kept);
        login_.failed = true;
        login_.errorCode = t.errorCode;
        phase_ = Phase::Resync;
        loginEnded(p.ts);
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
    PacketReader r(p.data, p.kept);
    uint32_t caps = static_cast<uint32_t>(r.le(2));
    if ((caps & kProtocol41) != 0) {
        PacketReader r41(p.data, p.kept);
        caps = static_cast<uint32_t>(r41.le(4));
        r41.skip(4 + 1 + 19);
        uint32_t ext =
            p.kept >= 32
                ? static_cast<uint32_t>(p.data[28] | (p.data[29] << 8) | (p.data[30] << 16) |
                                        (static_cast<uint32_t>(p.data[31]) << 24))
                : 0;
        r41.skip(4);
        clientCaps_ = caps;
        login_.collation = p.kept > 8 ? p.data[8] : 0;
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
    login_.clientFlags = clientCaps_;
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

void Session::loginEnded(uint64_t ts) {
    if (loginHook_) {
        loginHook_(login_, ts);
    }
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
    packetTruncated = false;
    if (packet.capacity() > 64 * 1024) {
        std::string().swap(packet);  // a large command's buffer is not kept for every later one
    } else {
        packet.clear();
    }
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
    pc.binary = pc.cursor = pc.done = false;
    pc.newSchema.clear();
    return pc;
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

}  // namespace mp::mysql
