// SPDX-License-Identifier: Apache-2.0
// proxy-mysql: a TCP proxy for MySQL that routes by role and follows the master, after LAIN's
// proxyd. Targets come from monitor-mysql in the same node (records on `mysql.topology`) or from
// a remote monitor's /servers feed (`servers_url`).
#include <memory>
#include <mp/sdk.hpp>
#include <string>

#include "feed.hpp"
#include "proxy.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"master_listen", MP_PROP_STRING, 0, "127.0.0.1:6033", "address:port of the master listener (\"\": none)", 0, 0, nullptr},
    {"slave_listen", MP_PROP_STRING, 0, "127.0.0.1:6034", "address:port of the slave listener (\"\": none)", 0, 0, nullptr},
    {"servers_url", MP_PROP_STRING, 0, "", "a remote monitor's topology feed (http://host:port/servers); empty: records on mysql.topology from this node's monitor", 0, 0, nullptr},
    {"token", MP_PROP_STRING, MP_PROP_SECRET, "", "the bearer token the feed is asked with (a read token of the monitor's node)", 0, 0, nullptr},
    {"threads", MP_PROP_INT, 0, "1", "event threads (each serves any connection)", 1, 64, nullptr},
    {"buffer_kb", MP_PROP_INT, 0, "64", "buffer per direction and connection: a side that fills it is not read until the other took some", 1, 16384, nullptr},
    {"max_connections", MP_PROP_INT, 0, "10000", "client connections at once; more are closed and counted", 1, 1000000, nullptr},
    {"max_memory_mb", MP_PROP_INT, 0, "256", "the buffers of every connection together (2 x buffer_kb each, allocated when it opens); a client that would pass it is closed and counted", 1, 65536, nullptr},
    {"connect_timeout_ms", MP_PROP_INT, 0, "2000", "a target that does not accept within this counts as down (the next slave is tried once)", 1, 600000, nullptr},
    {"close_after_switch_ms", MP_PROP_INT, 0, "0", "connections to a target that left its role are closed after this grace (0: never, LAIN's behaviour)", 0, 86400000, nullptr},
    {"slave_fallback", MP_PROP_BOOL, 0, "false", "with no slave, slave connections go to the master", 0, 0, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class ProxyPlugin : public mp::Plugin, public mp::RecordSink {
  public:
    ProxyPlugin(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          routes_(*this),
          connections_(host.counter("connections_total", "client connections accepted")),
          open_(host.counter("connections", "client connections open", MP_GAUGE)),
          refused_(host.counter("connections_refused_total",
                                "clients closed at once: no target for their role")),
          full_(host.counter("connections_full_total",
                             "clients closed at once: max_connections or max_memory_mb reached")),
          connectFailed_(host.counter("connect_failed_total",
                                      "clients closed because no target of their role answered")),
          toServer_(host.counter("bytes_to_server_total", "bytes from clients to targets")),
          toClient_(host.counter("bytes_to_client_total", "bytes from targets to clients")),
          updates_(host.counter("topology_updates_total", "topologies received")),
          invalid_(host.counter("topology_invalid_total",
                                "topologies that were not LAIN's JSON (targets kept)")),
          reconnects_(
              host.counter("feed_reconnects_total", "times the remote feed was dialled again")),
          feedRefused_(host.counter("feed_refused_total",
                                    "feed requests answered other than 200 (a wrong token: 401)")),
          closedAfterSwitch_(
              host.counter("closed_after_switch_total",
                           "connections closed after a switch (close_after_switch_ms)")) {
        mp::proxy::Options o;
        o.masterListen = cfg.str("master_listen");
        o.slaveListen = cfg.str("slave_listen");
        o.threads = static_cast<int>(cfg.i64("threads"));
        o.bufferBytes = static_cast<size_t>(cfg.i64("buffer_kb")) << 10;
        o.maxConnections = static_cast<size_t>(cfg.i64("max_connections"));
        o.maxMemoryBytes = static_cast<size_t>(cfg.i64("max_memory_mb")) << 20;
        if (o.maxMemoryBytes < 2 * o.bufferBytes) {
            throw mp::Error(
                "max_memory_mb holds not even one connection's buffers (2 x buffer_kb)");
        }
        o.connectTimeoutMs = static_cast<int>(cfg.i64("connect_timeout_ms"));
        o.closeAfterSwitchMs = static_cast<int>(cfg.i64("close_after_switch_ms"));
        o.slaveFallback = cfg.boolean("slave_fallback");
        if (o.masterListen.empty() && o.slaveListen.empty()) {
            throw mp::Error("master_listen and slave_listen are both empty: nothing to serve");
        }
        auto log = [h = host](int level, const std::string& line) { h.log(level, line); };
        proxy_ = std::make_unique<mp::proxy::Proxy>(o, log);
        const std::string url = cfg.str("servers_url");
        if (!url.empty()) {
            feed_ = std::make_unique<mp::proxy::Feed>(
                url, cfg.str("token"), [this](const mp::proxy::Topology& t) { apply(t); }, log,
                feedCounters_);
        }
        routes_.add("/proxy/targets", &ProxyPlugin::targets, MP_ROLE_READ);
    }

    void start() override {
        proxy_->start();
        if (feed_) {
            feed_->start();
        }
        timer_.start(host(), 250'000'000, 250'000'000, [this] { refresh(); });
    }

    void stop() override {
        timer_.stop();
        if (feed_) {
            feed_->stop();
        }
        proxy_->stop();
        refresh();
    }

    mp_status onRecord(const mp_record& rec, uint64_t token) override {
        std::string why;
        auto topo = mp::proxy::parseTopology(
            std::string_view(reinterpret_cast<const char*>(rec.payload.data), rec.payload.len),
            &why);
        if (topo) {
            ++feedCounters_.updates;
            apply(*topo);
        } else if (feedCounters_.invalid++ == 0) {
            host().warn("a record of " + std::string(mp::view(rec.stream)) +
                        " is not LAIN's topology JSON (" + why + "): the targets stay");
        }
        host().recordDone(token);
        return MP_OK;
    }

  private:
    void apply(const mp::proxy::Topology& t) {
        auto before = proxy_->targets();
        proxy_->setTargets(t);
        if (!(before == t)) {
            auto keys = [](const std::vector<mp::proxy::Target>& v) {
                std::string out;
                for (const auto& x : v) {
                    out += (out.empty() ? "" : ",") + x.key();
                }
                return out.empty() ? std::string("none") : out;
            };
            host().info("targets: master " + keys(t.master) + "; slaves " + keys(t.slave));
        }
    }

    void refresh() {
        auto s = proxy_->stats();
        connections_.follow(s.connections, last_.connections);
        open_.set(static_cast<int64_t>(s.open));
        refused_.follow(s.refused, last_.refused);
        full_.follow(s.full, last_.full);
        connectFailed_.follow(s.connectFailed, last_.connectFailed);
        toServer_.follow(s.bytesToServer, last_.bytesToServer);
        toClient_.follow(s.bytesToClient, last_.bytesToClient);
        closedAfterSwitch_.follow(s.closedAfterSwitch, last_.closedAfterSwitch);
        updates_.follow(feedCounters_.updates, lastUpdates_);
        invalid_.follow(feedCounters_.invalid, lastInvalid_);
        reconnects_.follow(feedCounters_.reconnects, lastReconnects_);
        feedRefused_.follow(feedCounters_.refused, lastRefused_);
    }

    void targets(const mp_http_request* /*req*/, mp_http_response* resp) {
        host().replyJson(resp, 200, proxy_->targetsJson());
    }

    mp::Routes<ProxyPlugin> routes_;
    mp::Counter connections_, open_, refused_, full_, connectFailed_, toServer_, toClient_,
        updates_, invalid_, reconnects_, feedRefused_, closedAfterSwitch_;
    mp::proxy::FeedCounters feedCounters_;
    mp::proxy::Stats last_;
    uint64_t lastUpdates_ = 0, lastInvalid_ = 0, lastReconnects_ = 0, lastRefused_ = 0;
    std::unique_ptr<mp::proxy::Proxy> proxy_;
    std::unique_ptr<mp::proxy::Feed> feed_;
    mp::Timer timer_;
};

}  // namespace

MP_DECLARE_PLUGIN(ProxyPlugin, MP_KIND_SINK, "proxy-mysql", "0.1.0",
                  "TCP proxy for MySQL that routes by role and follows the master", kProps, 0)
