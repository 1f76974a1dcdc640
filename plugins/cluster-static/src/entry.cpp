// SPDX-License-Identifier: Apache-2.0
// cluster-static: masters gather their slaves' reports (topology managed by hand).
// This is the plugin's frame: properties and lifecycle. A node forwards its own reports to the
// sinks unchanged, which is exactly what a standalone node does; the master/slave exchange
// arrives with its own issue.
#include <mp/sdk.hpp>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "this node is a slave (reports to a master)", 0, 0, nullptr},
    {"group", MP_PROP_STRING, 0, "", "cluster name (a label in static mode)", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "0", "unused in static mode (gossip port)", 0, 65535, nullptr},
    {"token", MP_PROP_STRING, MP_PROP_SECRET, "", "shared token required on management endpoints and master-slave links", 0, 0, nullptr},
    {"state_file", MP_PROP_STRING, 0, "", "where the topology is saved (default: next to the config file)", 0, 0, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "how often a master redials a lost slave", 1, 86400, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class StaticCluster : public mp::Plugin {
  public:
    StaticCluster(mp::Host host, const mp::Config& cfg)
        : Plugin(host), slave_(cfg.boolean("slave")) {}

    void start() override { host().info(slave_ ? "role: slave" : "role: master"); }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        return host().emit(MP_EVENT_REPORT, mp::view(ev.payload), ev.ts_ns, ev.seq);
    }

  private:
    bool slave_;
};

}  // namespace

MP_DECLARE_PLUGIN(StaticCluster, MP_KIND_CLUSTER, "cluster-static", "0.1.0",
                  "Static cluster: masters pull their slaves' reports; topology by hand", kProps, 0)
