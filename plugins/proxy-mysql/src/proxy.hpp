// SPDX-License-Identifier: Apache-2.0
// The proxy without the plugin glue: listeners per role, each client paired with a connection
// to a target of its role, bytes copied both ways through bounded buffers by a few epoll threads
// (no thread per connection). Targets change at any time without blocking traffic; existing
// connections stay where they are unless closeAfterSwitchMs says otherwise.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "topology.hpp"

namespace mp::proxy {

struct Options {
    std::string masterListen = "127.0.0.1:6033";  // "" : no listener
    std::string slaveListen = "127.0.0.1:6034";
    int threads = 1;
    size_t bufferBytes = 64u << 10;  // per direction and connection
    size_t maxConnections = 10000;
    size_t maxMemoryBytes = size_t{256} << 20;  // every connection's two buffers, together
    int connectTimeoutMs = 2000;
    int closeAfterSwitchMs = 0;  // 0: connections stay on a target that left its role
    bool slaveFallback = false;  // no slave: slave connections go to the master
};

/// Totals since start (the plugin turns them into counters).
struct Stats {
    uint64_t connections = 0, open = 0, refused = 0, connectFailed = 0, bytesToServer = 0,
             bytesToClient = 0, closedAfterSwitch = 0, full = 0;
};

class Proxy {
  public:
    using Log = std::function<void(int level, const std::string&)>;
    Proxy(Options o, Log log);
    ~Proxy();
    Proxy(const Proxy&) = delete;
    Proxy& operator=(const Proxy&) = delete;

    /// Binds the listeners (throws mp::Error with the address on failure) and starts the
    /// threads.
    void start();
    void stop();
    /// New connections use these; a change of a role's targets starts the grace period of the
    /// connections to a target that left it.
    void setTargets(const Topology& t);
    Topology targets() const;
    Stats stats() const;
    /// The targets per role, and per target: connections open, total, bytes each way.
    std::string targetsJson() const;
    /// The listeners' ports (after start(); 0 when off).
    uint16_t masterPort() const { return ports_[0]; }
    uint16_t slavePort() const { return ports_[1]; }

  private:
    struct TargetStats {
        std::atomic<uint64_t> open{0}, total{0}, toServer{0}, toClient{0}, failed{0};
        std::atomic<bool> warned{false};  // its failure was logged; logged again once it answers
    };
    struct Loop;
    struct Session;
    friend struct Loop;

    std::shared_ptr<const Topology> current() const;
    std::shared_ptr<TargetStats> statsOf(const Target& t);
    /// The target of try number `attempt` for a new connection of `role` (0 master, 1 slave;
    /// `base`: where its round robin starts); nullopt when there is none left to try.
    std::optional<Target> pick(int role, uint64_t base, size_t attempt);

    Options o_;
    Log log_;
    int listeners_[2] = {-1, -1};
    uint16_t ports_[2] = {0, 0};
    std::vector<std::unique_ptr<Loop>> loops_;
    mutable std::mutex mu_;  // the targets and the per-target table
    std::shared_ptr<const Topology> targets_;
    std::map<std::string, std::shared_ptr<TargetStats>> perTarget_;
    std::atomic<uint64_t> switchGen_{0};
    std::atomic<int64_t> switchAtMs_{0};
    std::atomic<uint64_t> rr_{0};
    std::atomic<uint64_t> open_{0};
    std::atomic<uint64_t> connections_{0}, refused_{0}, connectFailed_{0}, toServer_{0},
        toClient_{0}, closedAfterSwitch_{0}, full_{0};
    std::atomic<bool> stopping_{false};
};

}  // namespace mp::proxy
