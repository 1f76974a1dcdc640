// SPDX-License-Identifier: Apache-2.0
#include "poll.hpp"

#include <chrono>
#include <cstdlib>
#include <mp/clock.hpp>
#include <string_view>

namespace mp::monitor {

namespace {
const char* const kStatus[] = {
    "Uptime",
    "Threads_connected",
    "Threads_running",
    "Questions",
    "Com_commit",
    "Com_rollback",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Slow_queries",
    "Aborted_connects",
    "Connections",
    "Innodb_row_lock_waits",
    "Innodb_buffer_pool_pages_dirty",
    "Binlog_commits",
    "Rpl_semi_sync_master_status",
    "Rpl_semi_sync_master_clients",
    "Rpl_semi_sync_master_yes_tx",
    "Rpl_semi_sync_master_no_tx",
    "Rpl_semi_sync_slave_status",
};
const char* const kVariables[] = {
    "max_connections",
    "binlog_format",
    "gtid_strict_mode",
    "gtid_domain_id",
    "sync_binlog",
    "innodb_flush_log_at_trx_commit",
    "rpl_semi_sync_master_enabled",
    "rpl_semi_sync_slave_enabled",
    "rpl_semi_sync_master_timeout",
    "slave_parallel_threads",
    "slave_net_timeout",
    "binlog_row_image",
};

std::string inList(const char* const* names, size_t n) {
    std::string out = "(";
    for (size_t i = 0; i < n; ++i) {
        out += i == 0 ? "'" : ",'";
        out += names[i];
        out += "'";
    }
    return out + ")";
}

std::string val(const mysql::Connection::Row& row, size_t i) {
    return i < row.size() && row[i] ? *row[i] : std::string();
}

bool yes(const std::string& v) { return v == "1" || v == "ON" || v == "YES"; }
}  // namespace

namespace {
bool digit(char c) { return c >= '0' && c <= '9'; }

// The number right after `label` (spaces skipped): "History list length 42".
std::string numberAfter(std::string_view text, std::string_view label) {
    size_t at = text.find(label);
    if (at == std::string_view::npos) {
        return "";
    }
    size_t p = at + label.size();
    while (p < text.size() && text[p] == ' ') {
        ++p;
    }
    size_t end = p;
    while (end < text.size() && end - p < 20 && digit(text[end])) {
        ++end;
    }
    return std::string(text.substr(p, end - p));
}

// The number right before `label`: "3 queries inside InnoDB".
std::string numberBefore(std::string_view text, std::string_view label) {
    size_t at = text.find(label);
    if (at == std::string_view::npos || at == 0) {
        return "";
    }
    size_t end = at;
    while (end > 0 && text[end - 1] == ' ') {
        --end;
    }
    size_t p = end;
    while (p > 0 && end - p < 20 && digit(text[p - 1])) {
        --p;
    }
    return std::string(text.substr(p, end - p));
}
}  // namespace

std::map<std::string, std::string> innodbSummary(const std::string& text) {
    // Bounded: the first 256 KiB (the sections summed up come first).
    const std::string_view head = std::string_view(text).substr(0, 256u << 10);
    const std::pair<const char*, std::string> fields[] = {
        {"history_list_length", numberAfter(head, "History list length")},
        {"log_sequence_number", numberAfter(head, "Log sequence number")},
        {"last_checkpoint", numberAfter(head, "Last checkpoint at")},
        {"queries_inside", numberBefore(head, "queries inside InnoDB")},
        {"queries_in_queue", numberBefore(head, "queries in queue")},
        {"pending_reads", numberAfter(head, "Pending reads")},
        {"read_views_open", numberBefore(head, "read views open inside InnoDB")},
    };
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : fields) {
        if (!value.empty()) {
            out[key] = value;
        }
    }
    const std::string hits = numberAfter(head, "Buffer pool hit rate");
    if (!hits.empty()) {
        const std::string of = numberAfter(head, "Buffer pool hit rate " + hits + " /");
        out["buffer_pool_hit_rate"] = of.empty() ? hits : hits + " / " + of;
    }
    auto lsn = out.find("log_sequence_number");
    auto cp = out.find("last_checkpoint");
    if (lsn != out.end() && cp != out.end()) {
        uint64_t l = std::strtoull(lsn->second.c_str(), nullptr, 10);
        uint64_t c = std::strtoull(cp->second.c_str(), nullptr, 10);
        if (l >= c) {
            out["checkpoint_age"] = std::to_string(l - c);
        }
    }
    return out;
}

NodeStatus pollNode(mysql::Connection& conn, const mysql::ServerAddress& addr, bool innodb) {
    NodeStatus st;
    const auto t0 = std::chrono::steady_clock::now();
    st.polledNs = mp::wallClockNs();
    try {
        if (!conn.connected()) {
            conn.connect(addr);
        }
        auto rows = conn.query(
            "SELECT @@version, @@server_id, @@read_only, @@log_bin, @@log_slave_updates, "
            "@@gtid_binlog_pos, @@gtid_current_pos, @@gtid_slave_pos");
        if (rows.empty()) {
            throw std::runtime_error("no answer to the variables query");
        }
        const auto& r = rows[0];
        st.version = val(r, 0);
        st.tls = conn.tlsSession();
        st.serverId = static_cast<uint32_t>(std::stoul(val(r, 1).empty() ? "0" : val(r, 1)));
        st.readOnly = yes(val(r, 2));
        st.logBin = yes(val(r, 3));
        st.logSlaveUpdates = yes(val(r, 4));
        st.gtidBinlogPos = val(r, 5);
        st.gtidCurrentPos = val(r, 6);
        st.gtidSlavePos = val(r, 7);

        std::vector<std::string> names;
        auto slave = conn.query("SHOW SLAVE STATUS", &names);
        if (!slave.empty()) {
            ReplicaStatus rs;
            for (size_t i = 0; i < names.size(); ++i) {
                const std::string v = val(slave[0], i);
                const std::string& n = names[i];
                if (n == "Master_Host") {
                    rs.masterHost = v;
                } else if (n == "Master_Port") {
                    rs.masterPort = static_cast<uint16_t>(std::stoul(v.empty() ? "0" : v));
                } else if (n == "Slave_IO_Running") {
                    rs.ioRunning = v;
                } else if (n == "Slave_SQL_Running") {
                    rs.sqlRunning = v;
                } else if (n == "Seconds_Behind_Master" && slave[0][i]) {
                    rs.lagSeconds = std::stoll(v);
                } else if (n == "Last_IO_Error") {
                    rs.lastIoError = v;
                } else if (n == "Last_SQL_Error") {
                    rs.lastSqlError = v;
                } else if (n == "Master_Log_File") {
                    rs.readFile = v;
                } else if (n == "Read_Master_Log_Pos") {
                    rs.readPos = std::stoull(v.empty() ? "0" : v);
                } else if (n == "Relay_Master_Log_File") {
                    rs.execFile = v;
                } else if (n == "Exec_Master_Log_Pos") {
                    rs.execPos = std::stoull(v.empty() ? "0" : v);
                } else if (n == "Using_Gtid") {
                    rs.usingGtid = v;
                } else if (n == "Gtid_IO_Pos") {
                    rs.gtidIoPos = v;
                }
            }
            st.replica = std::move(rs);
        }
        for (const auto& row : conn.query("SHOW GLOBAL STATUS WHERE Variable_name IN " +
                                          inList(kStatus, std::size(kStatus)))) {
            st.status[val(row, 0)] = val(row, 1);
        }
        for (const auto& row : conn.query("SHOW GLOBAL VARIABLES WHERE Variable_name IN " +
                                          inList(kVariables, std::size(kVariables)))) {
            st.variables[val(row, 0)] = val(row, 1);
        }
        if (innodb) {
            try {
                auto rows2 = conn.query("SHOW ENGINE INNODB STATUS");
                if (!rows2.empty()) {
                    st.innodb = innodbSummary(val(rows2[0], 2));
                }
            } catch (const mysql::ServerError&) {
                // No PROCESS grant: the summary stays empty, the poll is still good.
            }
        }
        st.reachable = true;
    } catch (const std::exception& e) {
        conn.close();
        st = NodeStatus{};
        st.polledNs = mp::wallClockNs();
        st.reachable = false;
        st.error = e.what();
    }
    st.pollMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return st;
}

}  // namespace mp::monitor
