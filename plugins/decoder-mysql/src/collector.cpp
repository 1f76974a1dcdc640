// SPDX-License-Identifier: Apache-2.0
#include "collector.hpp"

namespace mp::mysql {

namespace {

inbound::Outcome outcomeOf(Outcome o) {
    switch (o) {
        case Outcome::Ok:
            return inbound::Outcome::Ok;
        case Outcome::Error:
            return inbound::Outcome::Error;
        case Outcome::ResultSet:
            return inbound::Outcome::ResultSet;
        case Outcome::Prepared:
            return inbound::Outcome::Prepared;
        case Outcome::Lost:
            return inbound::Outcome::Lost;
        case Outcome::None:
            break;
    }
    return inbound::Outcome::None;
}

const char* closeReason(uint32_t reason, bool quit) {
    if (quit) {
        return "quit";
    }
    switch (reason) {
        case MP_CLOSE_FIN:
            return "closed";
        case MP_CLOSE_RST:
            return "reset";
        case MP_CLOSE_IDLE:
            return "idle";
        case MP_CLOSE_EVICTED:
            return "evicted";
        case MP_CLOSE_SHUTDOWN:
            return "end of capture";
        default:
            return "lost";
    }
}

}  // namespace

Collector::Collector(mp::Host host, Options o)
    : host_(host),
      opt_(o),
      records_(host.counter("inbound_records_total",
                            "mysql.inbound records emitted (commands and connection events)")),
      bytes_(host.counter("inbound_bytes_total", "bytes of mysql.inbound record payloads")),
      dropped_(host.counter("inbound_dropped_total",
                            "mysql.inbound records dropped: the host's record buffer was full")),
      truncated_(host.counter("inbound_truncated_total",
                              "commands recorded without all their bytes (longer than "
                              "inbound_max_command_bytes): not replayable")) {}

void Collector::emit(Conn& c, inbound::Record& r) {
    r.client = c.client;
    r.server = c.server;
    r.connectionId = c.connectionId;
    r.n = ++c.n;
    std::lock_guard<std::mutex> lock(mu_);
    if (inBatch_ == 0) {
        batchTs_ = r.ts;
        batchKey_ = c.client;
        batchStarted_ = std::chrono::steady_clock::now();
    } else if (!opt_.binary) {
        payload_ += '\n';
    }
    if (opt_.binary) {
        inbound::appendBinary(r, payload_);
    } else {
        inbound::appendJson(r, payload_);
    }
    if (++inBatch_ >= opt_.batch) {
        flushLocked();
    }
}

void Collector::flush(uint64_t olderThanNs, bool wait) {
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    if (wait) {
        lock.lock();
    } else if (!lock.try_lock()) {
        return;  // the worker is emitting: the batch moves anyway
    }
    if (inBatch_ != 0 &&
        std::chrono::steady_clock::now() - batchStarted_ >= std::chrono::nanoseconds(olderThanNs)) {
        flushLocked();
    }
}

void Collector::flushLocked() {
    if (inBatch_ == 0) {
        return;
    }
    // A batch of one keeps its connection as the key (brokers route a connection's records
    // together); a batch of several connections has none.
    const std::string_view type = opt_.binary      ? inbound::kBinaryContentType
                                  : opt_.batch > 1 ? inbound::kJsonBatchContentType
                                                   : inbound::kJsonContentType;
    mp_status st = host_.emitRecord(inbound::kStream, payload_, ++seq_, batchTs_,
                                    opt_.batch > 1 ? std::string_view() : batchKey_, {}, type);
    if (st == MP_OK) {
        records_.add(inBatch_);
        bytes_.add(payload_.size());
    } else {
        dropped_.add(inBatch_);  // the holes in `n` tell the consumer
    }
    payload_.clear();
    inBatch_ = 0;
}

void Collector::start(Conn& c, uint64_t ts) {
    if (c.n != 0) {
        return;
    }
    inbound::Record r;  // events are rare: rec_ stays the commands' own
    r.type = inbound::Type::Connect;
    r.ts = ts;
    r.loginKnown = false;
    if (opt_.sessions) {
        auto it = opt_.sessions->find(c.client);
        if (it != opt_.sessions->end()) {  // the server listed it before the capture began
            c.listed = &it->second;
            c.connectionId = it->second.id;
            r.loginKnown = true;
            r.user = it->second.user;
            r.schema = it->second.schema;
        }
    }
    emit(c, r);
}

void Collector::login(Conn& c, const LoginInfo& login, uint64_t ts) {
    c.loginSeen = !login.failed;
    c.connectionId = login.connectionId;
    inbound::Record r;  // events are rare: rec_ stays the commands' own
    r.type = inbound::Type::Connect;
    r.ts = ts;
    r.user = login.user;
    r.schema = login.schema;
    r.serverVersion = login.serverVersion;
    r.clientFlags = login.clientFlags;
    r.collation = login.collation;
    r.tls = login.tls;
    r.compressed = login.compressed;
    r.loginFailed = login.failed;
    r.errorCode = login.errorCode;
    emit(c, r);
}

void Collector::command(Conn& c, const Transaction& tx) {
    start(c, tx.requestTs);
    if (tx.connectionId != 0) {
        c.connectionId = tx.connectionId;
    }
    c.quit = c.quit || tx.command == kQuit;
    inbound::Record& r = rec_;
    r.type = inbound::Type::Command;
    r.ts = tx.requestTs;
    r.loginKnown = c.loginSeen || c.listed != nullptr;
    r.user = tx.user;
    r.schema = tx.schema;
    if (c.listed != nullptr && !c.loginSeen) {
        if (r.user.empty()) {
            r.user = c.listed->user;
        }
        if (r.schema.empty()) {
            r.schema = c.listed->schema;  // unless a USE or COM_INIT_DB was seen since
        }
    }
    r.command = tx.command;
    r.commandName = commandName(tx.command);
    r.bytes = tx.packet;
    r.truncated = tx.packetTruncated;
    r.statementId = tx.statementId;
    r.sql = tx.sql;
    r.templateId = tx.fingerprintId;
    r.templateText = tx.fingerprint;
    r.outcome = outcomeOf(tx.outcome);
    r.errorCode = tx.errorCode;
    r.sqlState = tx.sqlState;
    r.errorMessage = tx.errorMessage;
    r.rows = tx.rowsReturned;
    r.affectedRows = tx.rowsAffected;
    r.responseTs = tx.responseTs;
    if (tx.packetTruncated) {
        truncated_.add();
    }
    emit(c, r);
}

void Collector::gap(Conn& c, uint32_t dir, uint64_t len, uint64_t ts) {
    start(c, ts);
    inbound::Record r;  // events are rare: rec_ stays the commands' own
    r.type = inbound::Type::Gap;
    r.ts = ts;
    r.gapFromServer = dir == 1;
    r.gapBytes = len;
    emit(c, r);
}

void Collector::close(Conn& c, uint32_t reason, uint64_t ts) {
    start(c, ts);
    inbound::Record r;  // events are rare: rec_ stays the commands' own
    r.type = inbound::Type::Close;
    r.ts = ts;
    r.reason = closeReason(reason, c.quit);
    emit(c, r);
}

}  // namespace mp::mysql
