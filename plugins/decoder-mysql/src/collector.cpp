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
    payload_.clear();
    if (opt_.binary) {
        inbound::appendBinary(r, payload_);
    } else {
        inbound::appendJson(r, payload_);
    }
    mp_status st =
        host_.emitRecord(inbound::kStream, payload_, ++seq_, r.ts, c.client, {},
                         opt_.binary ? inbound::kBinaryContentType : inbound::kJsonContentType);
    if (st == MP_OK) {
        records_.add();
        bytes_.add(payload_.size());
    } else {
        dropped_.add();  // the hole in `n` tells the consumer
    }
}

void Collector::start(Conn& c, uint64_t ts) {
    if (c.n != 0) {
        return;
    }
    inbound::Record r;  // events are rare: rec_ stays the commands' own
    r.type = inbound::Type::Connect;
    r.ts = ts;
    r.loginKnown = false;
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
    r.loginKnown = c.loginSeen;
    r.user = tx.user;
    r.schema = tx.schema;
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
