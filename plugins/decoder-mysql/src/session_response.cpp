// SPDX-License-Identifier: Apache-2.0
// The server's half of a session: a response packet read against the command it answers (OK,
// ERR, result sets and their rows, prepare answers, LOCAL INFILE, cursors, more results), and
// the transaction finished and emitted.
#include <algorithm>
#include <cctype>
#include <string_view>

#include "session.hpp"

namespace mp::mysql {

namespace {

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

}  // namespace

bool Session::isEof(const Packet& p) const {
    return p.kept >= 1 && p.data[0] == kEofHeader && p.length < kMaxEofLength;
}

uint16_t Session::parseOk(Transaction& tx, const uint8_t* d, size_t n) {
    PacketReader r(d, n);
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
        PacketReader changes(r.here(), std::min<size_t>(r.left(), total));
        while (changes.ok() && changes.left() > 0) {
            auto type = static_cast<uint8_t>(changes.le(1));
            uint64_t len = changes.lenenc();
            PacketReader item(changes.here(), std::min<size_t>(changes.left(), len));
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
    PacketReader r(d, n);
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
    pendingPacketBytes_ -= tx.packet.size();
    pending_.popFront();
    // Commands without a response sent behind this one: their turn now, in order.
    while (!pending_.empty() && pending_.front().done) {
        emit_(pending_.front().tx);
        pendingPacketBytes_ -= pending_.front().tx.packet.size();
        pending_.popFront();
    }
}

void Session::respond(Pending& pc, const Packet& p) {
    Transaction& tx = pc.tx;
    const uint8_t* d = p.data;
    const size_t n = p.kept;
    const uint8_t first = n > 0 ? d[0] : 0;
    // MariaDB progress reports look like errors (kMariaProgressCode): not an answer.
    if (first == kErrHeader && n >= 3 && (d[1] | (d[2] << 8)) == kMariaProgressCode) {
        return;
    }
    switch (pc.state) {
        case Resp::Start: {
            if (first == kErrHeader) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
                return;
            }
            switch (tx.command) {
                case kStatistics:
                    finish(Outcome::Ok, p.ts);
                    return;
                case kStmtPrepare: {
                    PacketReader r(d, n);
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
                    if (first == kOkHeader) {
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
                    if (first == kOkHeader && n >= 3) {
                        parseOk(tx, d, n);
                    } else if (isEof(p)) {
                        PacketReader r(d, n);
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
            if (first == kOkHeader && p.length >= kMinOkLength) {
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
            if (first == kLocalInfileHeader && tx.command == kQuery) {
                pc.state = Resp::Infile;
                return;
            }
            PacketReader r(d, n);
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
            if (first == kEofHeader && p.length >= kMinOkLength && p.length < kMaxEofLength) {
                // Not an EOF (5 bytes): the OK that ends a result without rows under
                // CLIENT_DEPRECATE_EOF, negotiated before this connection was first seen.
                deprecateEof_ = true;
                pc.state = Resp::Rows;
                respond(pc, p);
                return;
            }
            if (isEof(p)) {
                PacketReader r(d, n);
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
            if (first == kErrHeader) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
                return;
            }
            bool end = deprecateEof_ ? (first == kEofHeader && p.length < kMaxWirePacket &&
                                        p.length >= kMinOkLength)
                                     : isEof(p);
            if (!end) {
                ++tx.rowsReturned;
                return;
            }
            uint16_t status = 0;
            if (deprecateEof_) {
                status = parseOk(tx, d, n);
            } else {
                PacketReader r(d, n);
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
            if (first == kErrHeader) {
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
            if (first == kErrHeader) {
                parseErr(tx, d, n);
                finish(Outcome::Error, p.ts);
            } else if (first == kOkHeader) {
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
