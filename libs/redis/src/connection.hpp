// SPDX-License-Identifier: Apache-2.0
// One TCP connection to a Redis server, shared by Client and Subscriber: a non-blocking socket
// driven by poll() against a deadline, replies read through a 16 KiB buffer into a Parser.
#pragma once

#include <chrono>
#include <mp/redis.hpp>
#include <string>
#include <string_view>

namespace mp::redis::detail {

using Clock = std::chrono::steady_clock;

class Connection {
  public:
    explicit Connection(const Options& o);
    ~Connection() { close(); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Connects, then AUTH and SELECT (when set and `select`); throws ConnectionError.
    void open(bool select);
    void close();
    bool isOpen() const { return fd_ >= 0; }
    /// Whether the open connection was closed by the server (or has bytes nobody asked for):
    /// checked without waiting, before a command is sent.
    bool stale() const;

    /// Sends all of `data` by `deadline`; throws ConnectionError (the connection is closed).
    void send(std::string_view data, Clock::time_point deadline);
    /// The next reply by `deadline`: false when it has not (wholly) arrived by then, the part
    /// received kept. Throws ConnectionError or ProtocolError (the connection is closed).
    bool receive(Reply& out, Clock::time_point deadline);
    /// send() and receive() of one command within the read timeout; a timeout throws.
    Reply roundTrip(const std::vector<std::string>& args);

    /// Closes the connection and throws ConnectionError("redis host:port: " + what).
    [[noreturn]] void fail(const std::string& what);

    const std::string& where() const { return where_; }
    const Options& options() const { return options_; }

  private:
    void connectSocket();

    Options options_;
    std::string where_;  // "host:port" ("[v6]:port")
    int fd_ = -1;
    Parser parser_;
};

/// `deadline` in `ms` from now; time_point::max() for a negative `ms`.
Clock::time_point deadlineIn(int ms);

}  // namespace mp::redis::detail
