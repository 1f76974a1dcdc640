// SPDX-License-Identifier: Apache-2.0
// One AMQP 0-9-1 connection with one channel (rabbitmq-c), as sink-amqp's publisher and
// source-amqp's consumer open it: a TCP connect that says why it failed ("connection refused",
// "timed out", "cannot resolve ..."), login, channel 1; every failed RPC described in one line
// with the broker's own code and text ("403 ACCESS_REFUSED - ..."). Not thread-safe: the thread
// that opens a connection is the only one that uses it. The password is never part of a message.
#pragma once

#include <amqp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace mp::amqp {

/// Where and as whom.
struct Endpoint {
    std::string host = "127.0.0.1";
    uint16_t port = 5672;
    std::string vhost = "/";
    std::string user = "guest";
    std::string password = "guest";  // a secret: never logged
    int heartbeatS = 30;
    int connectTimeoutMs = 2000;  // connect, login and each RPC
    // TLS (amqps://): the broker's certificate is verified against `caFile` (the system's CAs
    // when empty), its name against `host`; TLS 1.2 or newer. A client certificate when both
    // `certFile` and `keyFile` are set.
    bool tls = false;
    std::string caFile;
    std::string certFile;
    std::string keyFile;
    std::string address() const { return host + ":" + std::to_string(port); }
};

/// rabbitmq-c's view of a string (no copy: valid while `s` is).
inline amqp_bytes_t bytes(const std::string& s) {
    return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
inline std::string text(amqp_bytes_t b) {
    return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

/// One line for a failed RPC: the library's error, or the broker's close code and text.
std::string describe(const amqp_rpc_reply_t& r);

class Connection {
  public:
    static constexpr uint16_t kChannel = 1;

    Connection() = default;
    ~Connection() { close(false); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Connects, logs in and opens channel 1; false with `why` (then close() it).
    bool open(const Endpoint& e, std::string& why);
    /// "" when the last RPC succeeded, else what went wrong (and the connection is marked broken
    /// when the broker closed it).
    std::string rpcError();
    /// Says goodbye when the socket still works (`channelToo`: closes the channel first), then
    /// frees everything. Safe to call twice.
    void close(bool channelToo);
    /// The socket failed or the broker closed the connection: close() will not talk any more.
    void broken() { healthy_ = false; }

    amqp_connection_state_t state() const { return state_; }
    bool isOpen() const { return state_ != nullptr; }

  private:
    amqp_connection_state_t state_ = nullptr;
    bool loggedIn_ = false;
    bool healthy_ = true;
};

/// The one thread that owns a client's connection, and how it is stopped: `stopping` set under
/// `mu`, a deadline for what is left to finish (`drainUntil`), `wake` notified, then joined.
/// The owner's other state may share `mu` and `wake`.
struct OwnerThread {
    std::mutex mu;
    std::condition_variable wake;
    bool stopping = false;  // mu
    std::chrono::steady_clock::time_point drainUntil;

    void start(std::function<void()> run) {
        std::lock_guard<std::mutex> lock(mu);
        if (thread_.joinable()) {
            return;
        }
        stopping = false;
        thread_ = std::thread(std::move(run));
    }
    void stop(std::chrono::milliseconds drain) {
        {
            std::lock_guard<std::mutex> lock(mu);
            if (!thread_.joinable()) {
                return;
            }
            stopping = true;
            drainUntil = std::chrono::steady_clock::now() + drain;
        }
        wake.notify_all();
        thread_.join();
    }

  private:
    std::thread thread_;
};

/// The reconnect policy of a client thread and its log: exponential backoff between attempts,
/// one log line per new cause of failure (a broker that stays down is not a log flood), one line
/// when the link is back.
class Retry {
  public:
    using Log = std::function<void(int level, const std::string& line)>;  // MP_LOG_* levels
    Retry(std::string what, int minMs, int maxMs, Log log)
        : what_(std::move(what)),
          minMs_(minMs),
          maxMs_(maxMs),
          backoffMs_(minMs),
          log_(std::move(log)) {}

    /// An attempt to connect failed: logged when the cause is new. Returns the time to wait
    /// before the next attempt (doubling up to the maximum).
    std::chrono::milliseconds failed(const std::string& why);
    /// A working link broke ("connection lost: WHY", logged when the cause is new); the next
    /// attempt may follow at once.
    void lost(const std::string& why);
    /// Connected: logs the recovery when there were failures or an earlier link. True when it
    /// is a reconnection (not the first connection).
    bool connected();

  private:
    std::string what_;
    int minMs_, maxMs_, backoffMs_;
    Log log_;
    std::string lastProblem_;
    uint64_t failedAttempts_ = 0;
    bool everConnected_ = false;
};

}  // namespace mp::amqp
