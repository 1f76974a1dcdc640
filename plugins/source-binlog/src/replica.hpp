// SPDX-License-Identifier: Apache-2.0
// Registering as a replica and asking for the binlog: the session variables a primary reads
// (checksums, heartbeat period, MariaDB's capability and GTID start state), COM_REGISTER_SLAVE
// and COM_BINLOG_DUMP (a file and position, or MariaDB's GTID state) or MySQL's
// COM_BINLOG_DUMP_GTID (a GTID set), and the checks that turn a server that cannot serve us
// into one line that says what to do.
#pragma once

#include <mp/mysql_client.hpp>
#include <string>

#include "gtid_set.hpp"

namespace mp::binlog {

// The client is shared with replay-mysql (libs/mysql).
using mysql::Connection;
using mysql::putLe;
using mysql::ServerAddress;
using mysql::ServerError;
using mysql::sqlQuote;

struct StreamStart {
    bool useGtid = true;    // from a GTID state ("" is the oldest binlog)
    std::string gtidState;  // useGtid: MariaDB's "0-1-5,..." or a MySQL set "uuid:1-9,..."
    std::string file;       // !useGtid: file and position
    uint64_t position = 4;
};

struct StreamOptions {
    uint32_t serverId = 0;
    int heartbeatS = 5;
};

/// What the server said about itself before the dump.
struct ServerFacts {
    bool checksum = false;  // events end with a CRC32
    std::string version;
};

/// Checks the server (binary log on, ROW format) and starts the dump from `start`. Throws
/// ServerError or std::runtime_error with a line that says what to do. After it returns, read
/// events with conn.read(): 0x00 then the event, or an ERR packet.
ServerFacts openStream(Connection& conn, const StreamStart& start, const StreamOptions& o);

/// MariaDB: throws ServerError 1236 when the server's oldest binlog starts after `state` in
/// one of its domains (the changes in between were purged: MariaDB itself would stream on).
void checkNotPurged(Connection& conn, const std::string& state);

/// COM_BINLOG_DUMP_GTID's body (after the command byte): the flags (BINLOG_THROUGH_GTID),
/// `serverId`, no file name, position 4 and the set in its binary form.
std::string dumpGtidPacket(uint32_t serverId, const MysqlGtidSet& from);

/// Where the server is now: its GTID state (MariaDB) or SHOW MASTER STATUS (SHOW BINARY LOG
/// STATUS on MySQL 8.4).
StreamStart currentPosition(Connection& conn);

/// A server error during the dump, explained (binlog purged, grants, duplicate server id...).
std::string explain(const ServerError& e, const StreamStart& start);

/// Errors that retrying cannot cure without the operator (grants, purged binlogs, a server
/// without binary log or in the wrong format): refused at start.
bool needsOperator(const ServerError& e);

}  // namespace mp::binlog
