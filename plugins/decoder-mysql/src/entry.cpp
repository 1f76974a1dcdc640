// SPDX-License-Identifier: Apache-2.0
// decoder-mysql: MySQL/MariaDB client/server protocol decoder (one instance per worker).
// Each worker's instance decodes its connections into transactions and aggregates them, with no
// lock and nothing shared with the other workers; at the end of each report interval the host
// takes every worker's aggregate out (collect(), between the records that worker handles) and
// worker 0's instance merges them into the report's totals and templates (report()).
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <mp/hostport.hpp>
#include <mp/mysql_client.hpp>
#include <mp/sdk.hpp>
#include <string>
#include <vector>

#include "aggregate.hpp"
#include "collector.hpp"
#include "session.hpp"
#include "watcher.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slow_threshold_ms", MP_PROP_INT, 0, "100", "latency (ms) above which a query is kept as a slow sample", 0, 86400000, nullptr},
    {"max_sql_length", MP_PROP_INT, 0, "1024", "bytes of raw SQL kept per sample", 16, 1048576, nullptr},
    {"samples", MP_PROP_STRING, 0, "raw", "statement text in reports (samples, slow samples): raw (as sent, execute parameters substituted), masked (literals replaced by ? as in the fingerprint; quoted values in error messages too), none (no text; error messages masked). mysql.inbound records (inbound: true) carry the commands as captured whatever this says", 0, 0, "raw|masked|none"},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates kept per interval; further ones are counted as evicted", 1, 10000000, nullptr},
    {"max_statements_per_connection", MP_PROP_INT, 0, "1024", "prepared statements remembered per connection", 1, 1000000, nullptr},
    {"inbound", MP_PROP_BOOL, 0, "false", "also emit each client command, with its exact bytes, and each connection event as a mysql.inbound record (the traffic collector, for replay)", 0, 0, nullptr},
    {"inbound_format", MP_PROP_STRING, 0, "json", "form of the mysql.inbound records", 0, 0, "json|binary"},
    {"inbound_backpressure", MP_PROP_STRING, 0, "drop", "when the host's record buffer is full: drop records (counted; a live capture never waits) or wait (reading a capture file: nothing lost)", 0, 0, "drop|wait"},
    {"inbound_batch", MP_PROP_INT, 0, "1", "mysql.inbound records per host record (binary: one after the other; JSON: one per line, application/x-ndjson); one broker message carries a batch", 1, 10000, nullptr},
    {"inbound_batch_ms", MP_PROP_INT, 0, "100", "without traffic, a batch not full goes out after this long (with traffic, at the next 100 ms stream tick)", 1, 60000, nullptr},
    {"server", MP_PROP_STRING, 0, "", "the captured server (host:port, as the probe sees it: the connections to that address are compared) that the decoder reads, with server_user, at each report: its Questions and Com_* counters against what the probe saw (the report's `coverage`); and once at start its open sessions and their prepared statements, for the connections seen mid-stream. Empty: none of that. The original's watcher.address", 0, 0, nullptr},
    {"server_user", MP_PROP_STRING, 0, "", "a user of that server (mysql_native_password; the counters need no privilege, the sessions PROCESS, their statements SELECT on performance_schema). The original's watcher.uname", 0, 0, nullptr},
    {"server_password", MP_PROP_STRING, MP_PROP_SECRET, "", "its password. The original's watcher.password", 0, 0, nullptr},
    {"server_tls", MP_PROP_STRING, 0, "off", "TLS to server and inbound_server (as the MySQL clients' --ssl-mode): off, required (encrypted, certificate not checked), verify_ca (signed by a CA of server_tls_ca), verify_identity (and issued for the host as written)", 0, 0, "off|required|verify_ca|verify_identity"},
    {"server_tls_ca", MP_PROP_STRING, 0, "", "PEM file of the CAs that sign the server's certificate (verify_ca, verify_identity); empty: the system's", 0, 0, nullptr},
    {"inbound_server", MP_PROP_STRING, 0, "", "with inbound: the captured server (host:port) the collector asks, at start, for the sessions already open (information_schema.PROCESSLIST): connections seen mid-stream then get their user and schema; empty: `server`, and when that is empty too they stay unknown", 0, 0, nullptr},
    {"inbound_server_user", MP_PROP_STRING, 0, "", "a user of that server with the PROCESS privilege (mysql_native_password); empty with inbound_server empty: server_user", 0, 0, nullptr},
    {"inbound_server_password", MP_PROP_STRING, MP_PROP_SECRET, "", "its password (likewise server_password)", 0, 0, nullptr},
    {"inbound_max_command_bytes", MP_PROP_INT, 0, "1048576", "bytes of one command kept whole for its record; a longer one is recorded truncated (not replayable)", 1024, 268435456, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class MysqlDecoder : public mp::Plugin, public mp::Collecting<mp::mysql::Aggregator> {
  public:
    MysqlDecoder(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          streams_(host.counter("streams_total", "TCP connections handed to the decoder")),
          bytes_(host.counter("bytes_total", "stream bytes handed to the decoder")),
          gaps_(host.counter("gap_bytes_total", "stream bytes reported missing")),
          errors_(host.counter("errors_total", "commands answered with an ERR packet")),
          rows_(host.counter("rows_returned_total", "rows of result sets")),
          lost_(host.counter("lost_responses_total",
                             "commands whose response was lost to a gap or the connection end")),
          tls_(host.counter("tls_sessions_total", "connections that switched to TLS (skipped)")),
          loginErrors_(host.counter("login_errors_total", "logins refused by the server")),
          unknownStmt_(host.counter("unknown_statements_total",
                                    "executes of statements whose text is not known (prepared "
                                    "before the capture, or forgotten under the bound)")),
          stmtEvicted_(host.counter("statements_evicted_total",
                                    "prepared statements forgotten under "
                                    "max_statements_per_connection")),
          resyncs_(host.counter("resyncs_total",
                                "restarts of a connection's decoding after a gap or garbage")),
          decompressErrors_(host.counter("decompress_errors_total",
                                         "compressed-protocol frames that did not inflate")),
          evicted_(
              host.counter("templates_evicted_total",
                           "transactions not aggregated because the template table was full")) {
        limits_.maxSql = static_cast<size_t>(cfg.i64("max_sql_length"));
        limits_.maxStatements = static_cast<size_t>(cfg.i64("max_statements_per_connection"));
        for (int c = 0; c < 256; ++c) {
            auto cmd = static_cast<uint8_t>(c);
            if (c <= mp::mysql::kResetConnection || cmd == mp::mysql::kStmtBulkExecute) {
                std::string name = "command_" + mp::mysql::commandName(cmd) + "_total";
                commands_[c] = host.counter(name.c_str(), "client commands of this kind");
            }
        }
        commands_[256] = host.counter("command_other_total", "client commands of other kinds");
        aggLimits_.maxTemplates = static_cast<size_t>(cfg.i64("max_templates"));
        aggLimits_.slowThresholdUs = static_cast<double>(cfg.i64("slow_threshold_ms")) * 1000.0;
        aggLimits_.maxSample = static_cast<size_t>(cfg.i64("max_sql_length"));
        const std::string samples = cfg.str("samples");
        aggLimits_.samples = samples == "masked" ? mp::mysql::Samples::Masked
                             : samples == "none" ? mp::mysql::Samples::None
                                                 : mp::mysql::Samples::Raw;
        agg_ = mp::mysql::Aggregator(aggLimits_);
        if (!cfg.str("server").empty()) {
            // One for every worker's instance (they ask whether a connection is its own); the
            // instance that writes the report reads the counters, from its first report on.
            watcher_ = mp::mysql::ServerWatcher::shared(cfg.str("server"), cfg.str("server_user"),
                                                        cfg.str("server_password"), serverTls(cfg),
                                                        cfg.str("server_tls_ca"));
            covSeen_ = host.counter("coverage_seen_questions_total",
                                    "commands to the watched server that its Questions counts, "
                                    "as the probe saw them (compared intervals only)");
            covCounted_ = host.counter("coverage_counted_questions_total",
                                       "the watched server's Questions over the same intervals, "
                                       "the watcher's own reading left out");
            covRatio_ = host.counter("coverage_ratio_ppm",
                                     "seen / counted questions since the first reading, in "
                                     "parts per million (1000000: nothing missed)",
                                     MP_GAUGE);
            covFailures_ = host.counter("coverage_failed_readings_total",
                                        "reports whose reading of the server's counters failed");
            // The sessions open before the capture, once per process: connections seen
            // mid-stream get their user, schema and prepared statements from them.
            std::string why;
            bool first = false;
            known_ = watcher_->sessions(why, first);
            if (first && !why.empty()) {  // (said once, by the instance that read them)
                host.warn("server " + watcher_->server() + ": cannot read " +
                          (known_ ? why : "its open sessions (" + why + ")") +
                          "; connections seen mid-stream keep what the wire shows");
            } else if (first && known_) {
                host.info("server " + watcher_->server() + ": " + std::to_string(known_->size()) +
                          " sessions open before the capture");
            }
            knownResolved_ =
                host.counter("statements_from_server_total",
                             "executes whose statement, prepared before the capture, the server's "
                             "performance_schema named");
        }
        if (cfg.boolean("inbound")) {
            limits_.keepPackets = true;
            limits_.maxCommandBytes = static_cast<size_t>(cfg.i64("inbound_max_command_bytes"));
            limits_.maxPendingPacketBytes = std::max<size_t>(16 << 20, limits_.maxCommandBytes);
            collector_ = std::make_unique<mp::mysql::Collector>(
                host, mp::mysql::Collector::Options{
                          cfg.str("inbound_format") == "binary",
                          static_cast<size_t>(cfg.i64("inbound_batch")),
                          cfg.str("inbound_server").empty()
                              ? known_
                              : listSessions(host, cfg, cfg.str("inbound_server"),
                                             cfg.str("inbound_server_user"),
                                             cfg.str("inbound_server_password"))});
            if (cfg.i64("inbound_batch") > 1) {
                batchNs_ = static_cast<uint64_t>(cfg.i64("inbound_batch_ms")) * 1'000'000ULL;
            }
            host.set("records.backpressure", cfg.str("inbound_backpressure").c_str());
        }
    }

    ~MysqlDecoder() override { flushCounts(); }

    void start() override {
        if (collector_ && batchNs_ != 0) {
            // A batch waits at most inbound_batch_ms, traffic or not (ticks follow packets).
            timer_.start(host(), batchNs_, batchNs_,
                         [this] { collector_->flush(batchNs_, false); });
        }
    }
    void stop() override {
        timer_.stop();
        if (collector_) {
            collector_->flush();
        }
    }
    // Stream-time ticks (every 100 ms of traffic, and one after the last connection closes at
    // the end of input): what is batched goes out.
    void onTick(uint64_t /*ts*/) override {
        if (collector_) {
            collector_->flush();
        }
    }

    void* streamOpen(const mp_flow& flow) override {
        streams_.add();
        auto* s = new Stream;
        const int family = flow.ip_version == 6 ? AF_INET6 : AF_INET;
        char ip[INET6_ADDRSTRLEN] = {0};
        inet_ntop(family, flow.server_ip, ip, sizeof ip);
        s->server = flow.ip_version == 6
                        ? "[" + std::string(ip) + "]:" + std::to_string(flow.server_port)
                        : std::string(ip) + ":" + std::to_string(flow.server_port);
        char cip[INET6_ADDRSTRLEN] = {0};
        inet_ntop(family, flow.client_ip, cip, sizeof cip);
        s->client = cip;
        s->clientPort = flow.client_port;
        s->session = std::make_unique<mp::mysql::Session>(
            limits_, (flow.flags & MP_FLOW_MIDSTREAM) != 0,
            [this, s](const mp::mysql::Transaction& tx) { record(tx, *s); }, &texts_);
        if (watcher_ && s->server == watcher_->server()) {
            s->watched = true;
            const std::string endpoint =
                (flow.ip_version == 6 ? "[" + s->client + "]:" : s->client + ":") +
                std::to_string(flow.client_port);
            s->clientKey = mp::mysql::endpointKey(endpoint);
            if (known_ && (flow.flags & MP_FLOW_MIDSTREAM) != 0) {
                auto it = known_->find(endpoint);
                s->session->assume(it != known_->end() ? &it->second : nullptr);
            }
        }
        if (collector_) {
            s->conn.client = flow.ip_version == 6 ? "[" + s->client + "]:" : s->client + ":";
            s->conn.client += std::to_string(flow.client_port);
            s->conn.server = s->server;
            s->session->onLogin([this, s](const mp::mysql::LoginInfo& login, uint64_t ts) {
                collector_->login(s->conn, login, ts);
            });
        }
        return s;
    }

    // The host calls this between the records of this instance's worker: no lock needed.
    std::unique_ptr<mp::mysql::Aggregator> collect(uint64_t /*seq*/, uint64_t /*ts*/) override {
        auto part = std::make_unique<mp::mysql::Aggregator>(aggLimits_);
        std::swap(*part, agg_);
        flushCounts();
        return part;
    }
    // On the report thread, beside worker 0's streams: only the parts and aggLimits_ (fixed).
    std::string report(std::vector<std::unique_ptr<mp::mysql::Aggregator>> parts) override {
        mp::mysql::Aggregator total(aggLimits_);
        for (const auto& part : parts) {
            if (part) {
                total.merge(*part);
            }
        }
        evicted_.add(total.evicted());
        std::string out = total.json();
        if (watcher_) {
            out += ",\"coverage\":" + coverage(total.covered());
        }
        return out;
    }
    void streamData(void* s, uint32_t dir, mp_bytes data, uint64_t ts) override {
        bytes_.add(data.len);
        static_cast<Stream*>(s)->session->data(dir, data.data, data.len, ts);
    }
    void streamGap(void* s, uint32_t dir, uint64_t len, uint64_t ts) override {
        gaps_.add(len);
        auto* st = static_cast<Stream*>(s);
        st->session->gap(dir, len, ts);  // commands that lost their answer first
        if (collector_) {
            collector_->gap(st->conn, dir, len, ts);
        }
    }
    void streamClose(void* s, uint32_t reason, uint64_t ts) override {
        auto* st = static_cast<Stream*>(s);
        st->session->close(ts);
        if (collector_) {
            collector_->close(st->conn, reason, ts);
        }
        flushCounts();
        const auto& stats = st->session->stats();
        tls_.add(stats.tlsSessions);
        unknownStmt_.add(stats.unknownStatements);
        knownResolved_.add(stats.statementsFromServer);
        stmtEvicted_.add(stats.statementEvictions);
        resyncs_.add(stats.resyncs);
        decompressErrors_.add(stats.decompressErrors);
        if (st->session->login().failed) {
            loginErrors_.add();
        }
        delete st;
    }

  private:
    struct Stream {
        std::string server;  // "ip:port"
        std::string client;  // ip
        uint16_t clientPort = 0;
        std::unique_ptr<mp::mysql::Session> session;
        mp::mysql::Collector::Conn conn;  // with `inbound`
        bool watched = false;             // to the server whose counters are compared
        uint64_t clientKey = 0;           // endpointKey of the client, when watched
    };

    // The report thread: reads the server's counters and compares them with what the probe
    // saw of its clients in the interval.
    std::string coverage(const mp::mysql::Seen& seen) {
        const uint64_t now =
            static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
        try {
            mp::mysql::StatusCounters own;
            auto reading = watcher_->read(own);
            if (!watching_) {
                const std::string tls = watcher_->tlsSession();
                host().info("coverage: reading the counters of " + watcher_->server() + " (" +
                            watcher_->version() + (tls.empty() ? "" : ", " + tls) +
                            ") at each report");
                watching_ = true;
            }
            account_.reading(reading, own, seen, now);
        } catch (const std::exception& e) {
            covFailures_.add();
            if (watching_ || !warned_) {
                host().warn(std::string("coverage: ") + e.what() +
                            "; the reports say so until a reading succeeds");
                watching_ = false;
                warned_ = true;
            }
            account_.failed(e.what(), seen, now);
        }
        if (account_.compared()) {
            const auto& q = account_.interval().front().second;
            covSeen_.add(q.seen);
            covCounted_.add(q.counted);
            const auto& t = account_.total().front().second;
            if (t.counted != 0) {
                covRatio_.set(static_cast<int64_t>(t.seen * 1000000 / t.counted));
            }
        }
        return account_.json(watcher_->server());
    }

    void record(const mp::mysql::Transaction& tx, Stream& s) {
        agg_.add(tx, s.server, s.client, s.clientPort);
        if (s.watched && !watcher_->own(s.clientKey)) {
            agg_.addCovered(tx);
        }
        if (collector_) {
            collector_->command(s.conn, tx);
        }
        // Metric counters are shared atomics: counted here and added every 256 commands, at
        // each connection's end and at each report interval (collect()).
        bool known =
            tx.command <= mp::mysql::kResetConnection || tx.command == mp::mysql::kStmtBulkExecute;
        ++counts_.commands[known ? tx.command : 256];
        counts_.errors += tx.outcome == mp::mysql::Outcome::Error ? 1 : 0;
        counts_.lost += tx.outcome == mp::mysql::Outcome::Lost ? 1 : 0;
        counts_.rows += tx.rowsReturned;
        if (++counts_.pending >= 256) {
            flushCounts();
        }
    }
    void flushCounts() {  // the worker's thread, or collect()
        if (counts_.pending == 0) {
            return;
        }
        for (size_t c = 0; c < counts_.commands.size(); ++c) {
            if (counts_.commands[c] != 0) {
                commands_[c].add(counts_.commands[c]);
            }
        }
        if (counts_.errors != 0) {
            errors_.add(counts_.errors);
        }
        if (counts_.lost != 0) {
            lost_.add(counts_.lost);
        }
        rows_.add(counts_.rows);
        counts_ = Counts{};
    }

    // The sessions open on the captured server before the capture (MRTE's "init database
    // information of all sessions"): null without a server, or when it cannot be asked (logged:
    // such connections are then marked unknown, never guessed).
    static mp::mysql::Tls serverTls(const mp::Config& cfg) {
        return mp::mysql::parseTls(cfg.str("server_tls")).value_or(mp::mysql::Tls::Off);
    }

    static std::shared_ptr<const mp::mysql::ServerSessions> listSessions(
        const mp::Host& host, const mp::Config& cfg, const std::string& server,
        const std::string& user, const std::string& password) {
        auto at = mp::net::parseHostPort(server);
        if (!at || at->port == 0) {
            throw mp::Error("inbound_server: host:port expected, not '" + server + "'");
        }
        mp::mysql::ServerAddress a;
        a.host = at->host;
        a.port = at->port;
        a.user = user;
        a.password = password;
        a.tls = serverTls(cfg);
        a.tlsCa = cfg.str("server_tls_ca");
        a.connectTimeoutMs = 3000;
        a.readTimeoutMs = 10000;
        try {
            std::string note;
            return std::make_shared<const mp::mysql::ServerSessions>(
                mp::mysql::readSessions(a, note));
        } catch (const std::exception& e) {
            host.warn("inbound_server " + server + ": cannot list its sessions (" + e.what() +
                      "); connections seen mid-stream stay unknown");
            return nullptr;
        }
    }

    mp::mysql::SessionLimits limits_;
    // With `server`: the sessions it had open before the capture (shared, read-only).
    std::shared_ptr<const mp::mysql::ServerSessions> known_;
    mp::Counter knownResolved_;
    std::shared_ptr<mp::mysql::ServerWatcher> watcher_;  // with `server`
    mp::mysql::CoverageAccount account_;                 // the report thread's
    bool watching_ = false;
    bool warned_ = false;
    mp::Counter covSeen_;
    mp::Counter covCounted_;
    mp::Counter covRatio_;
    mp::Counter covFailures_;
    std::unique_ptr<mp::mysql::Collector> collector_;  // with `inbound`
    uint64_t batchNs_ = 0;
    mp::Timer timer_;
    // This worker's prepared statement texts, shared by its sessions (which all close before
    // the decoder goes: the host closes every stream first).
    mp::mysql::StatementTexts texts_;
    mp::mysql::AggregatorLimits aggLimits_;
    mp::mysql::Aggregator agg_;
    mp::Counter streams_;
    mp::Counter bytes_;
    mp::Counter gaps_;
    mp::Counter errors_;
    mp::Counter rows_;
    mp::Counter lost_;
    mp::Counter tls_;
    mp::Counter loginErrors_;
    mp::Counter unknownStmt_;
    mp::Counter stmtEvicted_;
    mp::Counter resyncs_;
    mp::Counter decompressErrors_;
    mp::Counter evicted_;
    std::array<mp::Counter, 257> commands_;
    struct Counts {
        std::array<uint64_t, 257> commands{};
        uint64_t errors = 0;
        uint64_t lost = 0;
        uint64_t rows = 0;
        uint32_t pending = 0;
    } counts_;  // not yet added to the counters
};

}  // namespace

MP_DECLARE_PLUGIN(MysqlDecoder, MP_KIND_DECODER, "decoder-mysql", "0.4.0",
                  "MySQL/MariaDB client/server protocol decoder", kProps, 0)
