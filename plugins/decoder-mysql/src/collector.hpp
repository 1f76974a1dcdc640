// SPDX-License-Identifier: Apache-2.0
// The traffic collector (decoder-mysql with `inbound: true`): each client command of a
// connection, reassembled and in the connection's order, becomes one `mysql.inbound` record
// (mp/mysql_inbound.hpp) with its exact bytes, the user and schema in force and the server's
// answer; the connection's login, close and gaps become records too. One Collector per decoder
// worker: its records carry that worker's sequence numbers (a connection stays on one worker).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mp/mysql_inbound.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <string>
#include <unordered_map>

#include "session.hpp"
#include "watcher.hpp"

namespace mp::mysql {

class Collector {
  public:
    /// The sessions the server listed before the capture began (PROCESSLIST): what a
    /// connection seen mid-stream from that client address is.
    using Session = ServerSession;
    using Sessions = ServerSessions;  // by client "ip:port"

    struct Options {
        bool binary = false;                       // the binary form instead of JSON
        size_t batch = 1;                          // records per host record (one per line in JSON)
        std::shared_ptr<const Sessions> sessions;  // may be null
    };
    /// A connection's part.
    struct Conn {
        std::string client;  // "ip:port"
        std::string server;
        uint64_t n = 0;          // records emitted for it
        bool loginSeen = false;  // its login was decoded (else user and schema are unknown)
        uint32_t connectionId = 0;
        bool quit = false;                // COM_QUIT was sent
        const Session* listed = nullptr;  // seen mid-stream, its login from PROCESSLIST
    };

    Collector(mp::Host host, Options o);

    void login(Conn& c, const LoginInfo& login, uint64_t ts);
    void command(Conn& c, const Transaction& tx);
    void gap(Conn& c, uint32_t dir, uint64_t len, uint64_t ts);
    /// `reason`: MP_CLOSE_*.
    void close(Conn& c, uint32_t reason, uint64_t ts);
    /// Emits the batch being filled (any thread: the decoder's tick and the host's timer, so a
    /// batch never waits for traffic). `olderThanNs`: only when its first record is that old;
    /// `wait` false: not when the worker holds the batch (the host's timer thread never waits
    /// on a worker that may be waiting on a full record buffer).
    void flush(uint64_t olderThanNs = 0, bool wait = true);

  private:
    void start(Conn& c, uint64_t ts);  // the unknown login of a connection seen mid-stream
    void emit(Conn& c, inbound::Record& r);
    void flushLocked();

    mp::Host host_;
    Options opt_;
    std::mutex mu_;  // the batch and seq_ (the worker thread, and the timer's flush)
    uint64_t seq_ = 0;
    inbound::Record rec_;  // commands' (reused: its strings keep their capacity)
    std::string payload_;  // the batch being filled
    size_t inBatch_ = 0;
    uint64_t batchTs_ = 0;  // the first record's time
    std::string batchKey_;  // a batch of one: its client (the record's key)
    std::chrono::steady_clock::time_point batchStarted_;
    mp::Counter records_;
    mp::Counter bytes_;
    mp::Counter dropped_;
    mp::Counter truncated_;
};

}  // namespace mp::mysql
