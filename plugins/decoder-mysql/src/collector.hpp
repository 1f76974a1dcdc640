// SPDX-License-Identifier: Apache-2.0
// The traffic collector (decoder-mysql with `inbound: true`): each client command of a
// connection, reassembled and in the connection's order, becomes one `mysql.inbound` record
// (mp/mysql_inbound.hpp) with its exact bytes, the user and schema in force and the server's
// answer; the connection's login, close and gaps become records too. One Collector per decoder
// worker: its records carry that worker's sequence numbers (a connection stays on one worker).
#pragma once

#include <cstdint>
#include <mp/mysql_inbound.hpp>
#include <mp/sdk.hpp>
#include <string>

#include "session.hpp"

namespace mp::mysql {

class Collector {
  public:
    struct Options {
        bool binary = false;  // the binary form instead of JSON
    };
    /// A connection's part.
    struct Conn {
        std::string client;  // "ip:port"
        std::string server;
        uint64_t n = 0;          // records emitted for it
        bool loginSeen = false;  // its login was decoded (else user and schema are unknown)
        uint32_t connectionId = 0;
        bool quit = false;  // COM_QUIT was sent
    };

    Collector(mp::Host host, Options o);

    void login(Conn& c, const LoginInfo& login, uint64_t ts);
    void command(Conn& c, const Transaction& tx);
    void gap(Conn& c, uint32_t dir, uint64_t len, uint64_t ts);
    /// `reason`: MP_CLOSE_*.
    void close(Conn& c, uint32_t reason, uint64_t ts);

  private:
    void start(Conn& c, uint64_t ts);  // the unknown login of a connection seen mid-stream
    void emit(Conn& c, inbound::Record& r);

    mp::Host host_;
    Options opt_;
    uint64_t seq_ = 0;
    inbound::Record rec_;  // commands' (reused: its strings keep their capacity)
    std::string payload_;
    mp::Counter records_;
    mp::Counter bytes_;
    mp::Counter dropped_;
    mp::Counter truncated_;
};

}  // namespace mp::mysql
