// SPDX-License-Identifier: Apache-2.0
// The replayer: `mysql.inbound` records in, the same commands on a target server out. One target
// connection (and one thread) per captured connection, each running its commands in the
// captured order; connections run concurrently. Prepared statements are prepared again on the
// target and their ids mapped; users and schemas are mapped; commands start as captured
// (scaled by a speed factor) or as fast as possible. Bounded: at most `maxConnections`
// connections and `maxBufferBytes` of queued records (offer() says when full).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mp/mysql_client.hpp>
#include <mp/mysql_inbound.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "divergence.hpp"

namespace mp::replay {

struct Options {
    mysql::ServerAddress target;  // user empty: each connection logs in as its captured user
    std::map<std::string, std::string> users;    // captured user -> target user
    std::map<std::string, std::string> schemas;  // captured schema -> target schema
    double speed = 1.0;                          // 0: as fast as possible
    // As captured: the first command runs this long after its record arrived, so records that
    // arrive late (batches, other decoder workers, the broker) still start at their captured
    // offsets, in the captured order across connections.
    int64_t startDelayMs = 1000;
    bool readOnly = false;
    bool force = false;  // replay even when the target is the captured server
    size_t maxConnections = 512;
    size_t maxBufferBytes = 64u << 20;
    size_t maxTemplates = 10000;
    size_t maxSamples = 5;
};

/// Why a command was not run on the target (counters and the report).
enum class Skip {
    ReadOnly,          // it may write, and read_only is on
    Truncated,         // its bytes were cut by the collector
    UnknownStatement,  // an execute of a statement prepared before the capture
    PrepareFailed,     // an execute of a statement the target refused to prepare
    NotReplayable,     // replication, shutdown, kill, debug, bulk execute...
    NoConnection,      // the target connection failed (login refused, network)
    LoginUnknown,      // a connection seen mid-stream and no `user` configured
    SameServer,        // the target is the captured server (and `force` is off)
    Count
};
const char* skipName(Skip s);

class Replayer {
  public:
    using Done = std::function<void(uint64_t token)>;
    using Log = std::function<void(int level, const std::string& line)>;

    struct Stats {
        uint64_t replayed = 0;
        uint64_t skipped[static_cast<int>(Skip::Count)] = {};
        uint64_t targetErrors = 0;
        uint64_t divergent = 0;
        uint64_t connectionsOpened = 0;
        uint64_t connectionsFailed = 0;
        uint64_t connectionsOpen = 0;
        uint64_t gaps = 0;
        uint64_t missing = 0;  // records of a connection never received (holes in `n`)
        uint64_t lagMs = 0;    // how late the last command started against its captured time
        uint64_t bufferedBytes = 0;
    };

    Replayer(Options o, Done done, Log log);
    ~Replayer();
    Replayer(const Replayer&) = delete;
    Replayer& operator=(const Replayer&) = delete;

    /// Takes the records of one host record (a batch of the collector, or one):
    /// `done(token)` once each has run or been skipped; false (nothing taken) when the buffer
    /// or the connection bound is full: offer them again later.
    bool offer(std::vector<mysql::inbound::Record>&& batch, uint64_t token);
    /// Ends every connection (what is queued is given up: done() for each, counted nowhere).
    void stop();
    Stats stats() const;
    std::string reportJson() const;

  private:
    struct Ack {  // one host record: done once its last command has run
        std::atomic<size_t> left;
        uint64_t token;
    };
    struct Item {
        mysql::inbound::Record rec;
        std::shared_ptr<Ack> ack;
        size_t bytes;
    };
    void finish(Item& item);
    struct Conn;

    void run(Conn& c);
    void execute(Conn& c, const mysql::inbound::Record& r);
    bool open(Conn& c, const mysql::inbound::Record& connect);
    void skip(Skip why);
    void pace(Conn& c, uint64_t ts);
    std::string mapUser(const std::string& u) const;
    std::string mapSchema(const std::string& s) const;
    bool sameServer(const std::string& captured);
    void reap(bool all);

    Options opt_;
    Done done_;
    Log log_;
    Divergence divergence_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, std::unique_ptr<Conn>> conns_;  // by "client server"
    std::vector<std::unique_ptr<Conn>> ending_;  // closed or stopped, not joined yet
    std::atomic<bool> stopping_{false};
    std::atomic<size_t> buffered_{0};
    // The clock of "as captured": the first record's time and the moment it arrived (set once,
    // under mu_, before the first connection's thread starts; read by those threads).
    bool clockSet_ = false;
    uint64_t captureZero_ = 0;
    std::chrono::steady_clock::time_point wallZero_;
    std::vector<std::string> targetAddrs_;  // the target's "ip:port"s, resolved once
    std::atomic<bool> sameWarned_{false};

    std::atomic<uint64_t> replayed_{0};
    std::atomic<uint64_t> skipped_[static_cast<int>(Skip::Count)] = {};
    std::atomic<uint64_t> targetErrors_{0};
    std::atomic<uint64_t> opened_{0};
    std::atomic<uint64_t> failed_{0};
    std::atomic<uint64_t> gaps_{0};
    std::atomic<uint64_t> missing_{0};
    std::atomic<uint64_t> lagMs_{0};
};

}  // namespace mp::replay
