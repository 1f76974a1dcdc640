// SPDX-License-Identifier: Apache-2.0
// The client's half of a session: a command packet read into the transaction it starts
// (statement text and fingerprint, prepared statement ids, execute parameters, change user).
#include <algorithm>
#include <string_view>
#include <vector>

#include "params.hpp"
#include "session.hpp"

namespace mp::mysql {

namespace {

// Execute parameter blocks up to this size are kept undecoded per pending command (see
// ExecuteParams); larger ones are decoded at once, each value cut to 256 bytes.
constexpr size_t kMaxKeptParamBytes = 4096;

bool noResponse(uint8_t cmd) {
    return cmd == kQuit || cmd == kStmtClose || cmd == kStmtSendLongData;
}

// Skips one binary-protocol value of MySQL type `type`; false for a type that is never sent.
bool skipBinaryValue(PacketReader& r, uint8_t type) {
    switch (type) {
        case kTypeNull:
            return true;
        case kTypeTiny:
            r.skip(1);
            return r.ok();
        case kTypeShort:
        case kTypeYear:
            r.skip(2);
            return r.ok();
        case kTypeLong:
        case kTypeFloat:
        case kTypeInt24:
            r.skip(4);
            return r.ok();
        case kTypeDouble:
        case kTypeLongLong:
            r.skip(8);
            return r.ok();
        case kTypeTimestamp:
        case kTypeDate:
        case kTypeTime:
        case kTypeDateTime:
        case kTypeNewDate:
            r.skip(static_cast<size_t>(r.le(1)));
            return r.ok();
        case kTypeDecimal:
        case kTypeVarchar:
        case kTypeBit:
        case kTypeVector:
        case kTypeJson:
        case kTypeNewDecimal:
        case kTypeEnum:
        case kTypeSet:
        case kTypeTinyBlob:
        case kTypeMediumBlob:
        case kTypeLongBlob:
        case kTypeBlob:
        case kTypeVarString:
        case kTypeString:
        case kTypeGeometry:
            r.skip(static_cast<size_t>(r.lenenc()));
            return r.ok();
        default:
            return false;
    }
}

// COM_QUERY with CLIENT_QUERY_ATTRIBUTES: parameter count, parameter set count, then for a
// non-zero count a NULL bitmap, the new-params flag, (type, name) per parameter and the
// non-NULL values. Leaves `r` at the SQL text; false when the block cannot be walked.
bool skipQueryAttributes(PacketReader& r) {
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
    if (r.le(1) != kNewParamsBound) {
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
    if (limits_.keepPackets) {
        const size_t keep = std::min(p.kept, limits_.maxCommandBytes);
        if (pendingPacketBytes_ + keep <= limits_.maxPendingPacketBytes) {
            tx.packet.assign(reinterpret_cast<const char*>(p.data), keep);
            pendingPacketBytes_ += keep;
        }
        tx.packetTruncated = tx.packet.size() < p.length;
    }
    PacketReader r(p.data + 1, p.kept - 1);
    switch (tx.command) {
        case kQuery:
            if ((clientCaps_ & serverCaps_ & kQueryAttributes) != 0 && !skipQueryAttributes(r)) {
                r = PacketReader(p.data + 1, 0);  // attributes not understood: SQL not recovered
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
            if (id == kLastPreparedStatement) {
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
            if (st == nullptr && direct == nullptr && known_ != nullptr) {
                st = adoptKnown(id);
            }
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
                pc.cursor = (flags & kCursorTypeMask) != 0;
                r.skip(4);  // iteration count
                // Parameter values for samples (with query attributes: those skipped).
                // They are kept undecoded when small (formatted only for a sample), else
                // decoded now, each value cut to 256 bytes.
                if (st != nullptr && r.ok()) {
                    QueryAttributes qa{(flags & kParameterCountAvailable) != 0};
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
        if (pending_.size() == 1) {
            emit_(tx);
            pendingPacketBytes_ -= tx.packet.size();
            pending_.popBack();
        } else {
            pc.done = true;  // emitted when the commands before it are (finish())
        }
    }
}

}  // namespace mp::mysql
