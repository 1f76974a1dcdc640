// SPDX-License-Identifier: Apache-2.0
// Which of several monitors of one replication set acts (operations, automatic failover, mmm's
// duties): every one (none), the cluster's master (cluster: gossip or static), or the holder
// of a lease in Redis (redis), which also announces the switch decisions the mmm way.
#pragma once

#include <functional>
#include <memory>
#include <mp/sdk.hpp>
#include <string>

namespace mp::monitor {

struct CoordinationOptions {
    std::string mode = "none";  // none, cluster, redis
    std::string redis = "127.0.0.1:6379";
    std::string redisPassword;  // a secret
    std::string tag = "default";
    std::string topic = "mysqlprobe-switch";
    int leaseMs = 5000;
    std::string owner;  // unique per monitor: node name and pid
};

class Coordination {
  public:
    virtual ~Coordination() = default;
    virtual void start() {}
    virtual void stop() {}
    /// True when this monitor may act now.
    virtual bool acting() = 0;
    /// The topology changed (this monitor acted, or saw it change): tell the others.
    virtual void announce(const std::string& /*topologyJson*/) {}
};

/// Throws mp::Error for an unknown mode or a bad address.
std::unique_ptr<Coordination> makeCoordination(const CoordinationOptions& o, const Host& host,
                                               std::function<void(int, const std::string&)> log);

}  // namespace mp::monitor
