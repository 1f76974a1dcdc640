// SPDX-License-Identifier: Apache-2.0
// What proxy-mysql reads from a monitor: LAIN's topology JSON
// ({"master":{"containers":[{"container_ip","container_port"}]},"slave":{...}}), and the
// Server-Sent-Events stream that carries it. Both parsers are bounded and fuzzed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mp::proxy {

struct Target {
    std::string host;  // an IP address literal
    uint16_t port = 0;
    std::string key() const;  // "host:port" ("[v6]:port")
    bool operator==(const Target&) const = default;
};

struct Topology {
    std::vector<Target> master;
    std::vector<Target> slave;
    bool operator==(const Topology&) const = default;
};

/// LAIN's JSON; nullopt (and the reason in `why`) when it is not one: not JSON, a container
/// without an IP address literal or a port in 1..65535, more than 1,000 per role.
std::optional<Topology> parseTopology(std::string_view json, std::string* why = nullptr);

/// Thrown by SseParser when the stream breaks its limits.
class SseError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// An event stream (text/event-stream) cut into events: lines end with LF, CRLF or CR; `event:`
/// names the event, `data:` lines join with LF, a comment (':') and other fields are ignored,
/// an empty line dispatches. Holds at most one line and one event's data.
class SseParser {
  public:
    using Handler = std::function<void(const std::string& event, const std::string& data)>;
    explicit SseParser(Handler h, size_t maxLine = 1u << 20, size_t maxEvent = 4u << 20)
        : handler_(std::move(h)), maxLine_(maxLine), maxEvent_(maxEvent) {}
    /// Throws SseError past the limits (the stream should be dropped).
    void feed(std::string_view bytes);
    /// Bytes held now (a line not yet ended, an event's data not yet dispatched).
    size_t held() const { return line_.size() + data_.size() + event_.size(); }

  private:
    void line(std::string_view l);
    Handler handler_;
    size_t maxLine_, maxEvent_;
    std::string line_;
    bool lastCr_ = false;
    std::string event_, data_;
    bool hasData_ = false;
};

}  // namespace mp::proxy
