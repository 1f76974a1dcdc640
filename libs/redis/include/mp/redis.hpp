// SPDX-License-Identifier: Apache-2.0
// A small Redis client (RESP2) for coordination between monitors: commands on a blocking-style
// connection with connect and read timeouts, pub/sub, and a lease (only its holder acts).
//
// The parts:
//   - Reply, encode(), parse() and Parser: the RESP2 wire format. The parser is bounded (Limits)
//     and made for a server that may be hostile or broken: it never reads past the buffer it is
//     given, never recurses, and allocates nothing for a reply before the whole reply has
//     arrived (announced lengths are checked against the limits, never reserved), so what it
//     holds is at most the bytes actually received (the caller's buffer) plus, once a reply is
//     complete, the Reply built from them.
//   - Client: one connection, one command at a time (no pipelining), AUTH and SELECT at connect,
//     reconnecting lazily on the next command after the connection broke.
//   - Subscriber: a connection in pub/sub mode, (channel, message) pairs with a timeout.
//   - Lease: a key held by one owner for a ttl, acquired with SET NX PX and renewed or released
//     only by its owner (Lua, atomically).
//
// Nothing here is thread-safe: one Client, Subscriber or Lease per thread (or a lock around).
// A moved-from Client or Subscriber may only be assigned to or destroyed.
// RESP3 is not spoken (HELLO is never sent); a RESP3 reply is refused as a ProtocolError.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mp::redis {

/// Bytes from the server that are not RESP2, or that go past one of the Limits. Thrown by
/// parse() and Parser::next(); Client and Subscriber throw it with "host:port: " in front and
/// drop the connection (what follows on it cannot be trusted).
class ProtocolError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// A connection that cannot be made or broke: refused, timed out, closed by the server, a read
/// or write error, AUTH or SELECT refused at connect. The message names host:port and never
/// holds the password. The connection is dropped; the next command connects again.
class ConnectionError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// One RESP2 reply.
struct Reply {
    enum class Type {
        Status,   // +OK: `str`
        Error,    // -ERR ...: `str` (the whole line after '-', code first)
        Integer,  // :42: `integer`
        Bulk,     // $3 abc: `str` (binary-safe)
        Nil,      // $-1 (nil bulk) and *-1 (nil array): no value
        Array,    // *N: `elements`
    };
    Type type = Type::Nil;
    std::string str;
    int64_t integer = 0;
    std::vector<Reply> elements;

    bool isError() const { return type == Type::Error; }
    bool isNil() const { return type == Type::Nil; }
    bool isArray() const { return type == Type::Array; }
    /// A status or bulk string equal to `s` (e.g. isString("OK")).
    bool isString(std::string_view s) const {
        return (type == Type::Status || type == Type::Bulk) && str == s;
    }
    bool operator==(const Reply&) const = default;
};

/// What one reply may hold; past any of them the parser throws ProtocolError.
struct Limits {
    size_t maxBulk = size_t{64} << 20;  // bytes of one bulk string (and of a status/error line)
    size_t maxElements = 1'000'000;     // array elements in one reply, all arrays counted
    size_t maxDepth = 16;               // arrays nested in arrays (a top-level array is 1)
    size_t maxReplyBytes = size_t{128} << 20;  // wire bytes of one whole reply
};

/// A command as Redis reads it: a RESP array of bulk strings, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".
std::string encode(const std::vector<std::string>& args);

/// A reply in RESP2 as a server writes it (Nil as "$-1"); for tests, fakes and the fuzzer.
/// Throws std::invalid_argument for a Status or Error whose text holds CR or LF (it cannot be
/// written as one line).
std::string encodeReply(const Reply& r);

/// Parses one reply at the start of `buf` into `out`: the bytes it took, or 0 when `buf` holds
/// only the beginning of a reply (`out` is then untouched; call again with more bytes). Throws
/// ProtocolError on bytes that are not RESP2 (an unknown type byte, RESP3's included; a bad
/// number; a negative length other than -1; a missing CRLF; a bare CR or LF in a line) and past
/// `limits`. It stops at the limits from the announced lengths, before the data arrives.
/// Each call scans `buf` from its start: for a reply arriving in pieces use Parser, which
/// resumes where it stopped.
size_t parse(std::string_view buf, Reply& out, const Limits& limits = {});

/// The incremental parser: bytes in as they arrive (feed), whole replies out (next). Scanning
/// resumes where the previous call stopped, so a reply arriving in many pieces costs one pass;
/// its buffer holds what was fed and not yet taken, and grows only with it.
class Parser {
  public:
    explicit Parser(const Limits& limits = {}) : limits_(limits) {}

    void feed(std::string_view bytes) { buf_.append(bytes.data(), bytes.size()); }
    /// The next whole reply into `out`: true, or false when more bytes are needed. Throws
    /// ProtocolError (then only reset() makes the parser usable again).
    bool next(Reply& out);
    /// Forgets every byte fed (a new connection).
    void reset();
    /// Bytes fed and not yet returned as replies.
    size_t buffered() const { return buf_.size() - start_; }

    /// Where the scan of an incomplete reply stopped (internal; offsets from the reply's start).
    struct Scan {
        size_t pos = 0;              // the next element to scan
        size_t lineFrom = 0;         // where the search for its line's CR resumes
        uint64_t elements = 0;       // array elements announced so far
        std::vector<uint64_t> open;  // elements still to come in each open array, innermost last
    };

  private:
    Limits limits_;
    std::string buf_;
    size_t start_ = 0;  // buf_[start_..] is not returned yet
    Scan scan_;
};

/// Where and how to connect.
struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 6379;
    /// AUTH at connect. A secret: never in an exception's message or a log line (a server
    /// quoting it in an error reply has it replaced by "***" in the Reply).
    std::optional<std::string> password;
    /// With a password: AUTH user password (Redis 6 ACL); empty: AUTH password.
    std::string user;
    /// SELECT at connect (not for a Subscriber: pub/sub channels are not per database).
    std::optional<int> db;
    int connectTimeoutMs = 2000;  // the TCP connect, to each address the host resolves to
    /// The longest one command may take (> 0), from its first byte sent to its reply's last
    /// byte received (also AUTH and SELECT at connect). A server that trickles a reply does not
    /// stretch it.
    int readTimeoutMs = 5000;
    Limits limits;
};

namespace detail {
class Connection;
}

/// One connection to one server, one command at a time.
class Client {
  public:
    /// Does not connect: the first command does (so a monitor may start while Redis is down).
    explicit Client(const Options& options);
    ~Client();
    Client(Client&&) noexcept;
    Client& operator=(Client&&) noexcept;
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Sends `args` (the command and its arguments, binary-safe) and returns the reply; an error
    /// reply (-ERR, -WRONGTYPE, -NOAUTH...) is a Reply of type Error, not an exception.
    /// Connects first when not connected, or when the server closed the idle connection (seen
    /// before anything is sent: no command is ever sent twice). Throws ConnectionError (I/O,
    /// timeout, connect, AUTH or SELECT refused) or ProtocolError, naming host:port, and drops
    /// the connection: the command may or may not have run. Throws std::invalid_argument for
    /// empty `args`.
    Reply command(const std::vector<std::string>& args);
    /// Connects now (AUTH, SELECT) if not connected; throws like command().
    void connect();
    void close();
    bool connected() const;
    /// "host:port", as in the messages.
    const std::string& where() const;

  private:
    std::unique_ptr<detail::Connection> conn_;
};

/// A connection subscribed to channels (SUBSCRIBE), reading what is published on them. Pub/sub
/// is at most once: what is published while it is not connected is lost.
class Subscriber {
  public:
    /// Connects and subscribes (every channel confirmed before it returns); throws like
    /// Client::command(), std::invalid_argument without channels.
    Subscriber(const Options& options, std::vector<std::string> channels);
    ~Subscriber();
    Subscriber(Subscriber&&) noexcept;
    Subscriber& operator=(Subscriber&&) noexcept;
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;

    /// The next message published on a subscribed channel, as (channel, message), waiting at
    /// most `timeoutMs` (0: only what has arrived; negative: no limit); nullopt when none came
    /// in time (part of one may have arrived: it is kept for the next call). Throws
    /// ConnectionError or ProtocolError when the connection broke, and drops it; the next call
    /// connects and subscribes again.
    std::optional<std::pair<std::string, std::string>> next(int timeoutMs);
    const std::string& where() const;

  private:
    void subscribe();

    std::unique_ptr<detail::Connection> conn_;
    std::vector<std::string> channels_;
    std::deque<std::pair<std::string, std::string>> pending_;  // read while subscribing
};

/// A lease: one key that names its holder and expires after a ttl, so that of several monitors
/// only one (the holder) acts.
///
/// Semantics:
///   - acquireOrRenew() takes the lease when nobody holds it (SET key owner NX PX ttl) and, when
///     `owner` already holds it, extends it to a full ttl again, atomically and only if it is
///     still ours (EVAL: GET compared to owner, then PEXPIRE). It returns whether we hold it.
///   - A holder that stops renewing (it hung, crashed, or lost Redis) loses the lease ttl after
///     its last successful renewal: Redis expires the key and the next acquireOrRenew() of any
///     other owner takes it.
///   - release() deletes the key only if it is still ours (EVAL: GET compared, then DEL): a late
///     release by a holder that lost the lease never deletes its successor's lease.
///   - Expiry is Redis's: the monitors' clocks are never compared and need not agree. A holder
///     only measures a duration on its own monotonic clock: heldUntil() is when the lease ends
///     at the latest, counted from the moment its successful request was sent (before Redis
///     set the expiry), so stopping to act by then is safe whatever the network delay. Renew
///     well before (every ttl/3, say), and stop acting when acquireOrRenew() returns false or
///     throws, or heldUntil() has passed.
///   - `owner` must be unique to each monitor (host name and pid, say): two monitors with the
///     same owner both believe they hold the lease.
///   - Redis errors (WRONGTYPE when the key holds something else, scripts disabled...) are
///     thrown as std::runtime_error; I/O errors as the Client throws them.
class Lease {
  public:
    /// `ttlMs` > 0 (std::invalid_argument otherwise, and for an empty key or owner).
    Lease(Client& client, std::string key, std::string owner, int64_t ttlMs);

    bool acquireOrRenew();
    void release();
    /// The current holder (GET key): its owner string, or nullopt when nobody holds it.
    std::optional<std::string> holder();

    /// Whether the last acquireOrRenew() succeeded and heldUntil() has not passed.
    bool held() const;
    /// When the lease ends at the latest (steady clock); the epoch when not held.
    std::chrono::steady_clock::time_point heldUntil() const { return until_; }
    const std::string& key() const { return key_; }
    const std::string& owner() const { return owner_; }

  private:
    Client& client_;
    std::string key_;
    std::string owner_;
    std::string ttl_;  // ttlMs in decimal, as sent
    int64_t ttlMs_;
    bool mine_ = false;  // the last answer: ours (renew first next time)
    std::chrono::steady_clock::time_point until_{};
};

}  // namespace mp::redis
