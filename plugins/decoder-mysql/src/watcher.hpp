// SPDX-License-Identifier: Apache-2.0
// The watcher: with the decoder's `server` credentials, one connection to the captured server
// that reads its Questions and Com_* counters at each report (coverage.hpp compares them with
// what the probe saw). Used from the report thread only; workers ask, lock-free, whether a
// connection they decode is the watcher's own (its commands are left out of the comparison,
// and the server's counts of them subtracted).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mp/mysql_client.hpp>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "coverage.hpp"

namespace mp::mysql {

/// A 64-bit key of an endpoint "ip:port" as the decoder writes it (FNV-1a).
uint64_t endpointKey(std::string_view endpoint);

using ServerSessions = std::unordered_map<std::string, ServerSession>;  // by client "ip:port"

/// Reads a server's open sessions (information_schema.PROCESSLIST: every user's with the
/// PROCESS privilege) and, where the server keeps them, their prepared statements
/// (performance_schema.prepared_statements_instances: MariaDB 10.5+ and MySQL 5.7+ with
/// performance_schema on; MariaDB 10.2+ and MySQL 8 for the bound: the first 64 MiB of their
/// text, counted by the server). Throws (one line) when the sessions cannot be read; `note`
/// says why the statements could not be, or how many were past the bound (else it is empty).
ServerSessions readSessions(const ServerAddress& a, std::string& note);

class ServerWatcher {
  public:
    /// `at` is "host:port" or "host" (port 3306); a name is resolved once, here, IPv4 first
    /// (when it does not resolve, every reading fails saying so). Throws mp::Error with one
    /// line when `at` is not an address.
    ServerWatcher(const std::string& at, std::string user, std::string password, Tls tls = Tls::Off,
                  std::string tlsCa = {});
    /// The watcher of `at` with these credentials that the process's decoder instances (one
    /// per worker) share: made by the first, found by the others while one holds it.
    static std::shared_ptr<ServerWatcher> shared(const std::string& at, const std::string& user,
                                                 const std::string& password, Tls tls = Tls::Off,
                                                 const std::string& tlsCa = {});

    /// The server as the decoder names captured endpoints ("ip:port"): the connections to it
    /// are the ones compared.
    const std::string& server() const { return server_; }

    /// Reads the counters (connecting first when needed; after a failure, at most once per
    /// `retry`). `own`: what the watcher's own commands added to them since the previous
    /// reading, this one included. Throws std::runtime_error (one line, never the password).
    StatusCounters read(StatusCounters& own);

    /// Whether a captured connection from `clientKey` (endpointKey of "ip:port") is this
    /// watcher's own. Any thread.
    bool own(uint64_t clientKey) const {
        return clientKey != 0 && clientKey == ownKey_.load(std::memory_order_acquire);
    }
    /// The sessions the server had open when this was first called (once per process; every
    /// later call answers the same); null when they could not be read. `first`: this call read
    /// them (`why` then says what could not be read, if anything).
    std::shared_ptr<const ServerSessions> sessions(std::string& why, bool& first);
    /// The server's version string, once connected.
    const std::string& version() const { return conn_.serverVersion(); }
    /// The TLS session's protocol and cipher, once connected; empty: plain.
    std::string tlsSession() const { return conn_.tlsSession(); }

    std::chrono::milliseconds retry{10000};

  private:
    ServerAddress address_;
    std::string server_;
    Connection conn_;
    std::atomic<uint64_t> ownKey_{0};
    std::chrono::steady_clock::time_point nextTry_{};
    std::string lastError_;
    std::string unresolved_;  // why `at` has no address
    StatusCounters own_;      // since the previous reading
    std::mutex sessionsMutex_;
    bool sessionsRead_ = false;
    std::shared_ptr<const ServerSessions> sessions_;
};

}  // namespace mp::mysql
