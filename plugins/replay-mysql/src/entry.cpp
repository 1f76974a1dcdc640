// SPDX-License-Identifier: Apache-2.0
// replay-mysql: a sink of `mysql.inbound` records (decoder-mysql's collector, in the same node
// reading a capture, or from a broker queue through source-amqp) that runs the captured commands
// on a target server and reports how the target's answers differ from the captured ones.
#include <array>
#include <memory>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <string>

#include "replayer.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"host", MP_PROP_STRING, MP_PROP_REQUIRED, "", "target server, host name or address", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "3306", "its port", 1, 65535, nullptr},
    {"user", MP_PROP_STRING, 0, "", "user every connection logs in as on the target; empty: each connection's captured user (through user_map)", 0, 0, nullptr},
    {"password", MP_PROP_STRING, MP_PROP_SECRET, "", "the target users' password (mysql_native_password)", 0, 0, nullptr},
    {"user_map", MP_PROP_STRING_LIST, 0, "", "captured=target user names", 0, 0, nullptr},
    {"schema_map", MP_PROP_STRING_LIST, 0, "", "captured=target schema names (login, COM_INIT_DB and change user; not USE or qualified names in SQL text)", 0, 0, nullptr},
    {"speed", MP_PROP_STRING, 0, "1", "1: as captured; a factor (2: twice as fast); max: as fast as possible", 0, 0, nullptr},
    {"start_delay_ms", MP_PROP_INT, 0, "1000", "with a speed other than max: the first command runs this long after its record arrived, so that records arriving late (batches, several decoder workers, the broker) still start at their captured offsets, in order across connections", 0, 600000, nullptr},
    {"read_only", MP_PROP_BOOL, 0, "false", "replay only what cannot write (SELECT, SHOW, session SET...); the rest is skipped and counted", 0, 0, nullptr},
    {"force", MP_PROP_BOOL, 0, "false", "replay even when the target is the captured server itself", 0, 0, nullptr},
    {"max_connections", MP_PROP_INT, 0, "512", "target connections at once (one per captured connection); more wait", 1, 100000, nullptr},
    {"max_buffer_mb", MP_PROP_INT, 0, "64", "bytes of records queued for the connections; more wait", 1, 65536, nullptr},
    {"tls", MP_PROP_STRING, 0, "off", "TLS to the target (as the MySQL clients' --ssl-mode): off, required (encrypted, certificate not checked), verify_ca (signed by a CA of tls_ca), verify_identity (and issued for host)", 0, 0, "off|required|verify_ca|verify_identity"},
    {"tls_ca", MP_PROP_STRING, 0, "", "PEM file of the CAs that sign the target's certificate (verify_ca, verify_identity); empty: the system's", 0, 0, nullptr},
    {"connect_timeout_ms", MP_PROP_INT, 0, "5000", "target connection timeout", 1, 600000, nullptr},
    {"read_timeout_ms", MP_PROP_INT, 0, "600000", "longest wait for one answer of the target", 1, 86400000, nullptr},
    {"report_file", MP_PROP_STRING, 0, "", "file the divergence report is written to (JSON), every report_interval_s and at stop", 0, 0, nullptr},
    {"report_interval_s", MP_PROP_INT, 0, "10", "how often report_file is rewritten", 1, 86400, nullptr},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates in the divergence report; more are counted together", 1, 1000000, nullptr},
    {"samples", MP_PROP_INT, 0, "5", "divergent statements kept per template", 0, 1000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

std::map<std::string, std::string> pairs(const std::vector<std::string>& list, const char* key) {
    std::map<std::string, std::string> out;
    for (const auto& item : list) {
        auto eq = item.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
            throw mp::Error(std::string(key) + ": each entry is captured=target, not '" + item +
                            "'");
        }
        out[item.substr(0, eq)] = item.substr(eq + 1);
    }
    return out;
}

double speedOf(const std::string& s) {
    if (s == "max") {
        return 0;
    }
    try {
        size_t used = 0;
        double v = std::stod(s, &used);
        if (used == s.size() && v > 0 && v <= 1e6) {
            return v;
        }
    } catch (const std::exception&) {
    }
    throw mp::Error("speed: 1 (as captured), a factor above 0 (2.5), or max; not '" + s + "'");
}

class ReplaySink : public mp::Plugin, public mp::RecordSink {
  public:
    ReplaySink(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          reportFile_(cfg.str("report_file")),
          reportEveryNs_(static_cast<uint64_t>(cfg.i64("report_interval_s")) * 1'000'000'000ULL),
          routes_(*this),
          replayed_(host.counter("replayed_total", "commands run on the target")),
          targetErrors_(
              host.counter("target_errors_total", "commands the target answered with an error")),
          divergent_(host.counter("divergent_total",
                                  "commands whose answer differed from the captured one")),
          opened_(host.counter("connections_opened_total", "target connections opened")),
          failed_(host.counter("connections_failed_total", "target connections refused or broken")),
          gaps_(host.counter("gaps_total",
                             "captured bytes known missing (commands after may differ)")),
          missing_(host.counter("records_missing_total",
                                "records of a connection never received (the collector dropped "
                                "them)")),
          invalid_(host.counter("invalid_records_total",
                                "records that are not mysql.inbound records (skipped)")),
          open_(host.counter("connections", "target connections open", MP_GAUGE)),
          lag_(host.counter("lag_ms", "how late the last command started against its captured time",
                            MP_GAUGE)),
          buffered_(host.counter("buffered_bytes", "bytes of records queued", MP_GAUGE)) {
        for (int i = 0; i < static_cast<int>(mp::replay::Skip::Count); ++i) {
            std::string name = std::string("skipped_") +
                               mp::replay::skipName(static_cast<mp::replay::Skip>(i)) + "_total";
            skipped_[static_cast<size_t>(i)] =
                host.counter(name.c_str(), "commands not run on the target, by reason");
        }
        mp::replay::Options o;
        o.target.host = cfg.str("host");
        o.target.port = static_cast<uint16_t>(cfg.i64("port"));
        o.target.user = cfg.str("user");
        o.target.password = cfg.str("password");
        o.target.tls = mp::mysql::parseTls(cfg.str("tls")).value_or(mp::mysql::Tls::Off);
        o.target.tlsCa = cfg.str("tls_ca");
        o.target.connectTimeoutMs = static_cast<int>(cfg.i64("connect_timeout_ms"));
        o.target.readTimeoutMs = static_cast<int>(cfg.i64("read_timeout_ms"));
        o.users = pairs(cfg.list("user_map"), "user_map");
        o.schemas = pairs(cfg.list("schema_map"), "schema_map");
        o.speed = speedOf(cfg.str("speed"));
        o.startDelayMs = cfg.i64("start_delay_ms");
        o.readOnly = cfg.boolean("read_only");
        o.force = cfg.boolean("force");
        o.maxConnections = static_cast<size_t>(cfg.i64("max_connections"));
        o.maxBufferBytes = static_cast<size_t>(cfg.i64("max_buffer_mb")) << 20;
        o.maxTemplates = static_cast<size_t>(cfg.i64("max_templates"));
        o.maxSamples = static_cast<size_t>(cfg.i64("samples"));
        replayer_ = std::make_unique<mp::replay::Replayer>(
            std::move(o), [h = host](uint64_t token) { h.recordDone(token); },
            [h = host](int level, const std::string& line) { h.log(level, line); });
        routes_.add("/replay/report", &ReplaySink::report, MP_ROLE_READ);
    }

    void start() override {
        timer_.start(host(), 250'000'000, 250'000'000, [this] { refresh(); });
    }

    void stop() override {
        timer_.stop();
        replayer_->stop();
        refresh();
        writeReport();
    }

    mp_status onRecord(const mp_record& rec, uint64_t token) override {
        std::vector<mp::mysql::inbound::Record> batch;
        std::string error;
        std::string_view payload(reinterpret_cast<const char*>(rec.payload.data), rec.payload.len);
        std::string_view type(rec.content_type.data, rec.content_type.len);
        if (!mp::mysql::inbound::parseBatch(payload, type, batch, error)) {
            invalid_.add();
            if (!invalidLogged_.exchange(true)) {
                host().warn("a record of " + std::string(rec.stream.data, rec.stream.len) +
                            " is not a mysql.inbound record (" + error +
                            "); such records are skipped and counted in invalid_records_total");
            }
            host().recordDone(token);
            return MP_OK;
        }
        return replayer_->offer(std::move(batch), token) ? MP_OK : MP_EAGAIN;
    }

  private:
    void report(const mp_http_request* /*req*/, mp_http_response* resp) {
        host().replyJson(resp, 200, replayer_->reportJson());
    }

    void refresh() {
        auto s = replayer_->stats();
        replayed_.follow(s.replayed, last_.replayed);
        targetErrors_.follow(s.targetErrors, last_.targetErrors);
        divergent_.follow(s.divergent, last_.divergent);
        opened_.follow(s.connectionsOpened, last_.connectionsOpened);
        failed_.follow(s.connectionsFailed, last_.connectionsFailed);
        gaps_.follow(s.gaps, last_.gaps);
        missing_.follow(s.missing, last_.missing);
        for (size_t i = 0; i < skipped_.size(); ++i) {
            skipped_[i].follow(s.skipped[i], last_.skipped[i]);
        }
        open_.set(static_cast<int64_t>(s.connectionsOpen));
        lag_.set(static_cast<int64_t>(s.lagMs));
        buffered_.set(static_cast<int64_t>(s.bufferedBytes));
        if (!reportFile_.empty() && ++ticks_ * 250'000'000ULL >= reportEveryNs_) {
            ticks_ = 0;
            writeReport();
        }
    }

    void writeReport() {
        if (reportFile_.empty()) {
            return;
        }
        // A reader sees the old report or the new one, never a part (mp/files.hpp).
        if (std::string err = mp::writeFileAtomic(reportFile_, replayer_->reportJson() + "\n");
            !err.empty()) {
            host().warn(err);
        }
    }

    std::string reportFile_;
    uint64_t reportEveryNs_;
    uint64_t ticks_ = 0;
    mp::Routes<ReplaySink> routes_;
    mp::Timer timer_;
    std::unique_ptr<mp::replay::Replayer> replayer_;
    std::atomic<bool> invalidLogged_{false};
    mp::Counter replayed_, targetErrors_, divergent_, opened_, failed_, gaps_, missing_, invalid_,
        open_, lag_, buffered_;
    std::array<mp::Counter, static_cast<size_t>(mp::replay::Skip::Count)> skipped_;
    mp::replay::Replayer::Stats last_;
};

}  // namespace

MP_DECLARE_PLUGIN(ReplaySink, MP_KIND_SINK, "replay-mysql", "0.1.0",
                  "replays captured MySQL commands (mysql.inbound records) on a target server",
                  kProps, 0)
