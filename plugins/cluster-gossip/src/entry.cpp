// SPDX-License-Identifier: Apache-2.0
// cluster-gossip: SWIM membership (memberlist-compatible) with automatic master failover.
// This is the plugin's frame: properties and lifecycle. A node forwards its own reports to the
// sinks unchanged, which is what a single node does; membership arrives with its own issue.
#include <mp/sdk.hpp>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "this node is a slave (never master-eligible)", 0, 0, nullptr},
    {"group", MP_PROP_STRING, 0, "", "cluster name: nodes of another group are refused", 0, 0, nullptr},
    {"port", MP_PROP_INT, 0, "0", "gossip bind port (0: random)", 0, 65535, nullptr},
    {"keys", MP_PROP_STRING_LIST, MP_PROP_SECRET, "", "base64 AES keys (16/24/32 bytes), first one primary", 0, 0, nullptr},
    {"token", MP_PROP_STRING, MP_PROP_SECRET, "", "shared token for the management endpoints", 0, 0, nullptr},
    {"seeds_file", MP_PROP_STRING, 0, "", "where known members are saved (default: next to the config file)", 0, 0, nullptr},
    {"reconnect_period_s", MP_PROP_INT, 0, "10", "how often a lost report link is redialled", 1, 86400, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class GossipCluster : public mp::Plugin {
  public:
    GossipCluster(mp::Host host, const mp::Config& cfg)
        : Plugin(host), slave_(cfg.boolean("slave")) {}

    void start() override { host().info(slave_ ? "role: slave" : "role: master-eligible"); }

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

MP_DECLARE_PLUGIN(GossipCluster, MP_KIND_CLUSTER, "cluster-gossip", "0.1.0",
                  "Gossip cluster: SWIM membership and automatic master failover", kProps, 0)
