// SPDX-License-Identifier: Apache-2.0
#include "replica.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "binlog.hpp"

namespace mp::binlog {
namespace {

constexpr uint8_t kComRegisterSlave = 0x15;
constexpr uint8_t kComBinlogDump = 0x12;
constexpr uint8_t kComBinlogDumpGtid = 0x1e;
constexpr uint16_t kBinlogThroughGtid = 0x04;
constexpr uint16_t kErrParse = 1064;
constexpr uint16_t kErrAccessDenied = 1045;
constexpr uint16_t kErrSpecificAccessDenied = 1227;
constexpr uint16_t kErrMasterFatalReadingBinlog = 1236;
constexpr uint16_t kErrNoBinaryLogging = 1381;
constexpr int kMariaSlaveCapability = 4;  // MARIA_SLAVE_CAPABILITY_MINE: GTID, annotate, ...

std::string scalar(Connection& conn, const std::string& sql) {
    auto rows = conn.query(sql);
    if (rows.empty() || rows[0].empty() || !rows[0][0]) {
        return "";
    }
    return *rows[0][0];
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

}  // namespace

void checkNotPurged(Connection& conn, const std::string& state) {
    if (state.empty() || !conn.mariadb()) {
        return;
    }
    auto logs = conn.query("SHOW BINARY LOGS");
    if (logs.empty() || logs[0].empty() || !logs[0][0]) {
        return;
    }
    const std::string oldest = *logs[0][0];
    std::string startOfOldest;
    auto rows = conn.query("SELECT BINLOG_GTID_POS(" + sqlQuote(oldest) + ", 4)");
    if (!rows.empty() && !rows[0].empty() && rows[0][0]) {
        startOfOldest = *rows[0][0];
    }
    std::map<uint32_t, GtidEntry> have;
    std::map<uint32_t, GtidEntry> want;
    if (!parseGtidState(startOfOldest, have) || !parseGtidState(state, want)) {
        return;  // not MariaDB's form: the server decides
    }
    for (const auto& [domain, entry] : want) {
        auto it = have.find(domain);
        if (it != have.end() && it->second.seq > entry.seq) {
            // MariaDB would stream on from its oldest binlog without a word (gtid_strict_mode
            // off): the transactions in between are gone.
            throw ServerError(kErrMasterFatalReadingBinlog, "HY000",
                              "the server's oldest binlog " + oldest + " starts after GTID " +
                                  startOfOldest + ", past domain " + std::to_string(domain) +
                                  " of the start position");
        }
    }
}

std::string dumpGtidPacket(uint32_t serverId, const MysqlGtidSet& from) {
    // as MySQL's replica and mysqlbinlog send it: no file name, position 4, the set
    std::string out;
    const std::string set = from.encode();
    putLe(out, kBinlogThroughGtid, 2);
    putLe(out, serverId, 4);
    putLe(out, 0, 4);  // binlog file name length
    putLe(out, 4, 8);  // binlog position
    putLe(out, set.size(), 4);
    out += set;
    return out;
}

StreamStart currentPosition(Connection& conn) {
    StreamStart s;
    if (conn.mariadb()) {
        s.useGtid = true;
        s.gtidState = scalar(conn, "SELECT @@GLOBAL.gtid_binlog_pos");
        return s;
    }
    // MySQL 8.2 renamed SHOW MASTER STATUS (8.4 has only the new name)
    auto rows = [&] {
        try {
            return conn.query("SHOW MASTER STATUS");
        } catch (const ServerError& e) {
            if (e.code() != kErrParse) {
                throw;
            }
            return conn.query("SHOW BINARY LOG STATUS");
        }
    }();
    if (rows.empty() || rows[0].size() < 2 || !rows[0][0] || !rows[0][1]) {
        throw std::runtime_error("SHOW MASTER STATUS is empty: the server writes no binary log");
    }
    s.useGtid = false;
    s.file = *rows[0][0];
    s.position = std::stoull(*rows[0][1]);
    return s;
}

ServerFacts openStream(Connection& conn, const StreamStart& start, const StreamOptions& o) {
    ServerFacts f;
    f.version = conn.serverVersion();
    auto rows = conn.query(
        "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, "
        "@@GLOBAL.binlog_checksum, @@GLOBAL.server_id");
    if (rows.empty() || rows[0].size() < 4) {
        throw std::runtime_error("the server did not answer its binlog settings");
    }
    const auto& r = rows[0];
    if (!r[0] || (*r[0] != "1" && upper(*r[0]) != "ON")) {
        throw ServerError(kErrNoBinaryLogging, "HY000",
                          "the server writes no binary log: start it with log_bin (and "
                          "binlog_format=ROW)");
    }
    if (!r[1] || upper(*r[1]) != "ROW") {
        throw ServerError(kErrNoBinaryLogging, "HY000",
                          "binlog_format is " + r[1].value_or("NULL") +
                              ": row changes need binlog_format=ROW (SET GLOBAL "
                              "binlog_format=ROW, and in the server's configuration)");
    }
    const std::string checksum = r[2] ? upper(*r[2]) : "NONE";
    if (r[3] && std::to_string(o.serverId) == *r[3]) {
        throw ServerError(kErrNoBinaryLogging, "HY000",
                          "server_id " + std::to_string(o.serverId) +
                              " is the server's own: choose another server_id");
    }
    f.checksum = checksum == "CRC32";
    const std::string heartbeat =
        std::to_string(static_cast<uint64_t>(o.heartbeatS) * 1000000000ull);
    conn.query("SET @master_binlog_checksum = @@GLOBAL.binlog_checksum");
    conn.query("SET @master_heartbeat_period = " + heartbeat);
    if (!conn.mariadb()) {  // MySQL 8.0.26 and later read these names first
        conn.query("SET @source_binlog_checksum = @@GLOBAL.binlog_checksum");
        conn.query("SET @source_heartbeat_period = " + heartbeat);
    }
    if (start.useGtid) {
        checkNotPurged(conn, start.gtidState);
    }
    // MySQL from a GTID set: COM_BINLOG_DUMP_GTID, which needs gtid_mode not OFF
    MysqlGtidSet mysqlFrom;
    bool mysqlGtid = false;
    if (conn.mariadb()) {
        conn.query("SET @mariadb_slave_capability = " + std::to_string(kMariaSlaveCapability));
        if (start.useGtid) {
            conn.query("SET @slave_connect_state = " + sqlQuote(start.gtidState));
            conn.query("SET @slave_gtid_strict_mode = 0");
            conn.query("SET @slave_gtid_ignore_duplicates = 0");
        }
    } else if (start.useGtid) {
        if (isMysqlGtidState(start.gtidState) || start.gtidState.empty()) {
            if (!MysqlGtidSet::parse(start.gtidState, mysqlFrom)) {
                throw ServerError(kErrNoBinaryLogging, "HY000",
                                  "GTID state '" + start.gtidState +
                                      "' is not a MySQL GTID set (tagged GTIDs are not read): "
                                      "give start_file and start_position");
            }
        } else {
            throw ServerError(kErrNoBinaryLogging, "HY000",
                              "GTID state '" + start.gtidState +
                                  "' is MariaDB's, the server is MySQL: give start_file and "
                                  "start_position, or remove the checkpoint");
        }
        std::string mode;
        try {
            mode = upper(scalar(conn, "SELECT @@GLOBAL.gtid_mode"));
        } catch (const ServerError&) {
            // MySQL before 5.6: no GTIDs
        }
        if (mode == "OFF" || mode.empty()) {
            if (!start.gtidState.empty()) {
                throw ServerError(kErrNoBinaryLogging, "HY000",
                                  "the server has gtid_mode=OFF and the start is the GTID set " +
                                      start.gtidState +
                                      ": give start_file and start_position, or set gtid_mode=ON");
            }
        } else {
            mysqlGtid = true;
            if (start.gtidState.empty()) {
                // from the beginning: the oldest binlog the server has, which starts after
                // what it purged (the decoder learns that set from the file's PREVIOUS_GTIDS)
                MysqlGtidSet::parse(scalar(conn, "SELECT @@GLOBAL.gtid_purged"), mysqlFrom);
            }
        }
    }
    std::string reg;
    putLe(reg, o.serverId, 4);
    reg += '\0';  // host name
    reg += '\0';  // user
    reg += '\0';  // password
    putLe(reg, 0, 2);
    putLe(reg, 0, 4);  // replication rank
    putLe(reg, 0, 4);  // master id
    conn.send(kComRegisterSlave, reg);
    std::string ok;
    conn.read(ok);
    if (!ok.empty() && static_cast<uint8_t>(ok[0]) == 0xff) {
        Connection::raise(ok);
    }
    if (mysqlGtid) {
        conn.send(kComBinlogDumpGtid, dumpGtidPacket(o.serverId, mysqlFrom));
        return f;
    }
    std::string file = start.useGtid ? std::string() : start.file;
    if (start.useGtid && !conn.mariadb()) {
        // MySQL with gtid_mode=OFF, from the beginning: its oldest binlog file
        auto logs = conn.query("SHOW BINARY LOGS");
        if (logs.empty() || logs[0].empty() || !logs[0][0]) {
            throw std::runtime_error("SHOW BINARY LOGS is empty: the server writes no binary log");
        }
        file = *logs[0][0];
    }
    std::string dump;
    putLe(dump, start.useGtid ? 4 : start.position, 4);
    putLe(dump, 0, 2);  // flags: block (wait for new events)
    putLe(dump, o.serverId, 4);
    dump += file;
    conn.send(kComBinlogDump, dump);
    return f;
}

bool needsOperator(const ServerError& e) {
    switch (e.code()) {
        case kErrAccessDenied:
        case kErrSpecificAccessDenied:
        case kErrMasterFatalReadingBinlog:
        case kErrNoBinaryLogging:
        case ServerError::kAuthPluginError:
            return true;
        default:
            return false;
    }
}

std::string explain(const ServerError& e, const StreamStart& start) {
    const std::string what = e.what();
    switch (e.code()) {
        case kErrAccessDenied:
            return what + " (check user and password)";
        case kErrSpecificAccessDenied:
            return what +
                   " (the user needs: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* "
                   "TO ...; SELECT on the tables when the binlog has no column names)";
        case kErrMasterFatalReadingBinlog: {
            std::string where = start.useGtid ? "GTID state '" + start.gtidState + "'"
                                              : start.file + ":" + std::to_string(start.position);
            return what + " (the binlog at " + where +
                   " is no longer on the server, purged? Changes after it are lost to this "
                   "replica: rebuild the consumers, then remove the checkpoint or set start)";
        }
        default:
            return what;
    }
}

}  // namespace mp::binlog
