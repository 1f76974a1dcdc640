// SPDX-License-Identifier: Apache-2.0
// sink-websocket: streams every report to the clients of /collector (on the host's server).
// Done here: the endpoint, native JSON text frames, a bounded queue per client (the host's).
// Still to come with its own issue: the mysqlprobe-v1 format, snappy, the pusher, keepalive.
#include <mp/sdk.hpp>
#include <mutex>
#include <set>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"path", MP_PROP_STRING, 0, "/collector", "websocket path on the host's server", 0, 0, nullptr},
    {"format", MP_PROP_STRING, 0, "native", "report format", 0, 0, "native|mysqlprobe-v1"},
    {"compression", MP_PROP_STRING, 0, "none", "compression of native reports", 0, 0, "none|snappy"},
    {"pusher_servers", MP_PROP_STRING_LIST, 0, "", "ws://host:port servers to push reports to", 0, 0, nullptr},
    {"pusher_path", MP_PROP_STRING, 0, "", "websocket path on the pusher servers", 0, 0, nullptr},
    {"pusher_preconnect", MP_PROP_BOOL, 0, "false", "connect to every pusher server at start", 0, 0, nullptr},
    {"connect_timeout_ms", MP_PROP_INT, 0, "1000", "pusher connect timeout", 1, 3600000, nullptr},
    {"write_timeout_ms", MP_PROP_INT, 0, "1000", "a client whose write blocks longer is dropped", 1, 3600000, nullptr},
    {"ping_timeout_s", MP_PROP_INT, 0, "30", "keepalive: a client silent this long is dropped", 1, 86400, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "pusher reconnect period", 1, 86400, nullptr},
    {"max_message_kb", MP_PROP_INT, 0, "16384", "largest message accepted from or sent to a client", 1, 1048576, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class WebsocketSink : public mp::Plugin {
  public:
    WebsocketSink(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          path_(cfg.str("path")),
          sent_(host.counter("reports_sent_total", "report messages queued to websocket clients")),
          clients_(host.counter("clients", "connected /collector clients", MP_GAUGE)) {
        if (path_.empty() || path_[0] != '/') {
            throw mp::Error("path must start with '/': " + path_);
        }
        if (cfg.str("format") != "native" || cfg.str("compression") != "none") {
            throw mp::Error("format mysqlprobe-v1 and snappy compression are not implemented yet");
        }
        if (!cfg.list("pusher_servers").empty()) {
            host.warn("the pusher is not implemented yet: pusher.servers is ignored");
        }
        mp_ws_handler h{};
        h.struct_size = sizeof h;
        h.user = this;
        h.on_open = [](void* self, mp_ws_conn* c, const mp_http_request*) -> mp_status {
            return static_cast<WebsocketSink*>(self)->add(c);
        };
        h.on_close = [](void* self, mp_ws_conn* c) {
            static_cast<WebsocketSink*>(self)->remove(c);
        };
        if (host.api()->ws_endpoint(host.raw(), path_.c_str(), &h) != MP_OK) {
            throw mp::Error("cannot serve websocket path " + path_);
        }
    }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        for (mp_ws_conn* c : conns_) {
            host().api()->ws_send(c, MP_WS_TEXT, ev.payload);
            sent_.add();
        }
        return MP_OK;
    }

  private:
    mp_status add(mp_ws_conn* c) {
        std::lock_guard<std::mutex> lock(mutex_);
        conns_.insert(c);
        clients_.set(static_cast<int64_t>(conns_.size()));
        return MP_OK;
    }
    void remove(mp_ws_conn* c) {
        std::lock_guard<std::mutex> lock(mutex_);
        conns_.erase(c);
        clients_.set(static_cast<int64_t>(conns_.size()));
    }

    std::string path_;
    std::mutex mutex_;
    std::set<mp_ws_conn*> conns_;
    mp::Counter sent_;
    mp::Counter clients_;
};

}  // namespace

MP_DECLARE_PLUGIN(WebsocketSink, MP_KIND_SINK, "sink-websocket", "0.1.0",
                  "Streams reports to websocket clients of /collector", kProps, 0)
