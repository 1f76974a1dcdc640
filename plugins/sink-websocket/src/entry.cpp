// SPDX-License-Identifier: Apache-2.0
// sink-websocket: streams every report to the clients of /collector (on the host's server) and,
// with pusher servers configured, pushes it to one of them. Formats: native JSON (text frames,
// or snappy in binary frames) and the original Go probe's mysqlprobe-v1 (snappy, binary).
#include <algorithm>
#include <map>
#include <memory>
#include <mp/original_api.hpp>
#include <mp/pusher.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "encode.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"path", MP_PROP_STRING, 0, "/collector", "websocket path on the host's server", 0, 0, nullptr},
    {"format", MP_PROP_STRING, 0, "auto", "report format: native JSON, or the original Go probe's (snappy short-key JSON); auto: mysqlprobe-v1 when api is original, else native. A /collector client may ask for another with ?format=", 0, 0, "auto|native|mysqlprobe-v1"},
    {"api", MP_PROP_STRING, 0, "native", "whose clients this node serves by default: native, or the original probe's (format auto becomes mysqlprobe-v1); the host sets original for a file with only the original's keys", 0, 0, mp::original::kApiValues},
    {"compression", MP_PROP_STRING, 0, "none", "compression of native reports (mysqlprobe-v1 is always snappy)", 0, 0, "none|snappy"},
    {"pusher_servers", MP_PROP_STRING_LIST, 0, "", "ws://host:port servers to push reports to (one at a time, next on failure)", 0, 0, nullptr},
    {"pusher_path", MP_PROP_STRING, 0, "/", "websocket path on the pusher servers", 0, 0, nullptr},
    {"pusher_preconnect", MP_PROP_BOOL, 0, "false", "connect to a pusher server at start, not at the first report", 0, 0, nullptr},
    {"pusher_buffer", MP_PROP_INT, 0, "256", "reports kept until a pusher server acknowledges them; beyond, the oldest is dropped (counted)", 1, 100000, nullptr},
    {"pusher_ack", MP_PROP_STRING, 0, "pong", "what acknowledges a pushed report: the pong to a ping sent after it, or the receiver's {\"ack\":SEQ} message", 0, 0, "pong|message"},
    {"connect_timeout_ms", MP_PROP_INT, 0, "1000", "pusher connect timeout", 1, 3600000, nullptr},
    {"write_timeout_ms", MP_PROP_INT, 0, "1000", "a client whose write blocks longer is dropped", 1, 3600000, nullptr},
    {"ping_timeout_s", MP_PROP_INT, 0, "30", "keepalive: clients are pinged every 0.9 x this; one silent this long is dropped", 1, 86400, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "pusher: wait between rounds of failed connection attempts", 1, 86400, nullptr},
    {"max_message_kb", MP_PROP_INT, 0, "16384", "largest message accepted from a client", 1, 1048576, nullptr},
    {"queue_reports", MP_PROP_INT, 0, "64", "reports queued per /collector client; beyond, the oldest is dropped (counted)", 1, 100000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class WebsocketSink : public mp::Plugin {
  public:
    WebsocketSink(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          path_(cfg.str("path")),
          format_(cfg.str("format") == "mysqlprobe-v1" ||
                          (cfg.str("format") == "auto" &&
                           mp::original::parseApi(cfg.str("api")) == mp::original::Api::Original)
                      ? mp::ws::Format::MysqlProbeV1
                      : mp::ws::Format::Native),
          compression_(cfg.str("compression") == "snappy" && format_ == mp::ws::Format::Native
                           ? mp::ws::Compression::Snappy
                           : mp::ws::Compression::None),  // mysqlprobe-v1: snappy always
          sent_(host.counter("reports_sent_total", "report messages queued to websocket clients")),
          encodeErrors_(host.counter("encode_errors_total", "reports that could not be encoded")),
          skipped_(host.counter("reports_skipped_total",
                                "empty reports not sent (mysqlprobe-v1 sends nothing for them)")),
          clients_(host.counter("clients", "connected /collector clients", MP_GAUGE)),
          pushSent_(host.counter("pusher_sent_total", "reports pushed (first attempt)")),
          pushRetried_(host.counter("pusher_retried_total",
                                    "reports pushed again after a failover or reconnect")),
          pushDropped_(host.counter("pusher_dropped_total",
                                    "reports dropped because the pusher buffer was full")),
          pushAcked_(host.counter("pusher_acked_total", "pushed reports acknowledged")),
          pushFailures_(
              host.counter("pusher_failures_total", "pusher connections that failed or broke")),
          pushConnected_(
              host.counter("pusher_connected", "1 while connected to a pusher server", MP_GAUGE)) {
        if (path_.empty() || path_[0] != '/') {
            throw mp::Error("path must start with '/': " + path_);
        }
        const int64_t pingS = cfg.i64("ping_timeout_s");
        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.user = this;
        h.on_open = [](void* self, mp_ws_conn* c, const mp_http_request* req) -> mp_status {
            return static_cast<WebsocketSink*>(self)->add(c, req);
        };
        h.on_close = [](void* self, mp_ws_conn* c) {
            static_cast<WebsocketSink*>(self)->remove(c);
        };
        h.ping_interval_ms = static_cast<uint32_t>(std::max<int64_t>(1, pingS * 900));
        h.idle_timeout_ms = static_cast<uint32_t>(pingS * 1000);
        h.write_timeout_ms = static_cast<uint32_t>(cfg.i64("write_timeout_ms"));
        h.max_message_bytes = static_cast<uint32_t>(cfg.i64("max_message_kb") * 1024);
        h.queue_messages = static_cast<uint32_t>(cfg.i64("queue_reports"));
        h.role = MP_ROLE_READ;  // reports: any caller with the read role (docs/security.md)
        if (host.api()->ws_endpoint(host.raw(), path_.c_str(), &h) != MP_OK) {
            throw mp::Error("cannot serve websocket path " + path_);
        }
        std::vector<std::string> servers = cfg.list("pusher_servers");
        servers.erase(std::remove(servers.begin(), servers.end(), std::string()), servers.end());
        if (!servers.empty()) {
            mp::push::PusherOptions o;
            o.servers = servers;
            o.path = cfg.str("pusher_path");
            o.preconnect = cfg.boolean("pusher_preconnect");
            o.connectTimeout = std::chrono::milliseconds(cfg.i64("connect_timeout_ms"));
            o.writeTimeout = std::chrono::milliseconds(cfg.i64("write_timeout_ms"));
            o.reconnectPeriod = std::chrono::seconds(cfg.i64("reconnect_period_s"));
            o.bufferReports = static_cast<size_t>(cfg.i64("pusher_buffer"));
            o.ack = cfg.str("pusher_ack") == "message" ? mp::push::AckMode::Message
                                                       : mp::push::AckMode::Pong;
            try {
                pusher_ = std::make_unique<mp::push::Pusher>(
                    o, [this](int level, const std::string& m) { this->host().log(level, m); },
                    [this](const mp::push::PusherStats& s) { publish(s); });
            } catch (const std::invalid_argument& e) {
                throw mp::Error(e.what());
            }
        }
    }

    void start() override {
        if (pusher_) {
            pusher_->start();
        }
    }

    void stop() override {
        if (pusher_) {
            pusher_->stop();  // delivers what it can within its drain time
        }
    }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        const std::string_view report(reinterpret_cast<const char*>(ev.payload.data),
                                      ev.payload.len);
        // One encoding per variant that someone asked for, made once per report and outside the
        // lock (add/remove run on the host's event loop: it never waits for an encoding).
        const Variant configured{format_, compression_};
        std::set<Variant> wanted{configured};
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (const auto& [c, v] : conns_) {
                wanted.insert(v);
            }
        }
        std::map<Variant, std::optional<mp::push::Encoded>> encoded;
        bool failed = false;
        for (const Variant& v : wanted) {
            std::optional<mp::push::Encoded> msg;
            try {
                msg = mp::ws::encodeReport(report, v.first, v.second);
            } catch (const std::exception& e) {
                if (!failed) {
                    encodeErrors_.add();
                    host().warn(std::string("report not sent: ") + e.what());
                }
                failed = true;
            }
            encoded.emplace(v, std::move(msg));
        }
        if (!encoded[configured] && !failed) {
            skipped_.add();
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (const auto& [c, v] : conns_) {
                auto it = encoded.find(v);  // absent: a client that came since (the next one)
                if (it != encoded.end() && it->second) {
                    const auto& msg = it->second;
                    host().api()->ws_send(
                        c, msg->opcode,
                        mp_bytes{reinterpret_cast<const uint8_t*>(msg->data.data()),
                                 msg->data.size()});
                    sent_.add();
                }
            }
        }
        if (pusher_ && encoded[configured]) {
            pusher_->push(ev.seq, std::move(*encoded[configured]));
        }
        return MP_OK;
    }

  private:
    using Variant = std::pair<mp::ws::Format, mp::ws::Compression>;

    // A client may ask for another encoding than the configured one: ?format=native|
    // mysqlprobe-v1 and ?compression=none|snappy (native only). Other values are refused.
    mp_status add(mp_ws_conn* c, const mp_http_request* req) {
        Variant v{format_, compression_};
        if (auto f = host().param(req, "format")) {
            if (*f != "native" && *f != "mysqlprobe-v1") {
                return MP_EINVAL;
            }
            v.first = *f == "native" ? mp::ws::Format::Native : mp::ws::Format::MysqlProbeV1;
        }
        if (auto z = host().param(req, "compression")) {
            if (*z != "none" && *z != "snappy") {
                return MP_EINVAL;
            }
            v.second = *z == "snappy" ? mp::ws::Compression::Snappy : mp::ws::Compression::None;
        }
        if (v.first == mp::ws::Format::MysqlProbeV1) {
            v.second = mp::ws::Compression::None;  // always snappy: one encoding, not two
        }
        std::lock_guard<std::mutex> lock(mutex_);
        conns_[c] = v;
        clients_.set(static_cast<int64_t>(conns_.size()));
        return MP_OK;
    }
    void remove(mp_ws_conn* c) {
        std::lock_guard<std::mutex> lock(mutex_);
        conns_.erase(c);
        clients_.set(static_cast<int64_t>(conns_.size()));
    }
    // Counters follow the pusher's own figures (called from its thread).
    void publish(const mp::push::PusherStats& s) {
        std::lock_guard<std::mutex> lock(statsMutex_);
        pushSent_.follow(s.sent, last_.sent);
        pushRetried_.follow(s.retried, last_.retried);
        pushDropped_.follow(s.dropped, last_.dropped);
        pushAcked_.follow(s.acked, last_.acked);
        pushFailures_.follow(s.failures, last_.failures);
        pushConnected_.set(static_cast<int64_t>(s.connected));
    }

    std::string path_;
    mp::ws::Format format_;
    mp::ws::Compression compression_;
    std::mutex mutex_;
    std::map<mp_ws_conn*, Variant> conns_;  // each client's encoding
    mp::Counter sent_;
    mp::Counter encodeErrors_;
    mp::Counter skipped_;
    mp::Counter clients_;
    mp::Counter pushSent_;
    mp::Counter pushRetried_;
    mp::Counter pushDropped_;
    mp::Counter pushAcked_;
    mp::Counter pushFailures_;
    mp::Counter pushConnected_;
    std::mutex statsMutex_;
    mp::push::PusherStats last_;
    std::unique_ptr<mp::push::Pusher> pusher_;
};

}  // namespace

MP_DECLARE_PLUGIN(WebsocketSink, MP_KIND_SINK, "sink-websocket", "0.1.0",
                  "Streams reports to websocket clients of /collector and pushes them to servers",
                  kProps, 0)
