// SPDX-License-Identifier: Apache-2.0
// An AMQP 0-9-1 publisher with publisher confirms (rabbitmq-c), on a thread of its own: the one
// thread that touches the connection. Messages wait in a queue bounded in bytes; at most
// `maxInFlight` are published and not yet confirmed. A message counts as delivered only when
// the broker confirms it (basic.ack); a nack, or a connection that breaks, puts the unconfirmed
// messages back at the head of the queue, in order, and they are published again, with the same
// message id, after a reconnect with exponential backoff. Nothing the broker did not confirm
// is forgotten, except when the queue is full (the oldest waiting message is dropped, counted)
// or at stop() once the drain time has passed (counted). With retryUnroutable, a record the
// broker returned (no queue took it) does not count as delivered either: it is published again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mp/amqp_connection.hpp>
#include <mutex>
#include <string>
#include <thread>

namespace mp::amqp {

/// Where and how to publish.
struct Options {
    Endpoint endpoint;  // broker, vhost, credentials, heartbeat, connect timeout
    std::string exchange = "mysqlprobe";
    std::string exchangeType = "topic";
    enum class Declare { Declare, Passive, None } declare = Declare::Declare;
    bool persistent = true;  // delivery mode 2 (and a durable exchange when declared)
    bool mandatory = true;   // unroutable messages come back (counted as returned)
    /// A tracked message (a record) that comes back unroutable is held and published again
    /// every reconnectMaxMs until a queue takes it, instead of counting as delivered: a binding
    /// missing for a while (a broker that lost it in a crash, a consumer not bound yet) loses
    /// nothing. Untracked messages (reports) are counted as returned either way.
    bool retryUnroutable = false;
    size_t maxInFlight = 1000;
    size_t maxQueuedBytes = 64u << 20;
    int reconnectMinMs = 100;
    int reconnectMaxMs = 5000;
    /// Called once per tracked message with its token, on the publisher's thread:
    /// true when the broker confirmed it, false when it was dropped (queue full, or not
    /// confirmed when stop() gave up). One callback for all messages: no allocation per message.
    std::function<void(uint64_t token, bool delivered)> done;
};

/// One message to publish.
struct Message {
    std::string routingKey;
    std::string messageId;  // the same on every publication of this message
    std::string type;       // AMQP `type` property ("report", a record stream name)
    std::string contentType = "application/json";
    std::string body;
    uint64_t timestampS = 0;  // AMQP `timestamp` (seconds); 0: not set
    uint32_t attempts = 0;    // publications so far (managed by the publisher)
    bool tracked = false;     // Options::done is called for it, once, with its token
    uint64_t token = 0;
};

/// What happened, for counters (read from any thread).
struct Stats {
    std::atomic<uint64_t> published{0};   // first publications
    std::atomic<uint64_t> resent{0};      // publications after a nack or a broken connection
    std::atomic<uint64_t> confirmed{0};   // basic.ack
    std::atomic<uint64_t> nacked{0};      // basic.nack (each is published again)
    std::atomic<uint64_t> returned{0};    // basic.return: no queue took it
    std::atomic<int64_t> held{0};         // returned records waiting to be published again
    std::atomic<uint64_t> dropped{0};     // never confirmed: queue full, or left at stop()
    std::atomic<uint64_t> reconnects{0};  // connections made after the first
    std::atomic<uint64_t> failures{0};    // connection attempts that failed, connections broken
    std::atomic<int64_t> connected{0};    // 1 while a channel is open with confirms
    std::atomic<int64_t> inFlight{0};     // published, not yet confirmed
    std::atomic<int64_t> queuedBytes{0};  // bodies waiting or in flight
};

class Publisher {
  public:
    /// log(level, line) with the MP_LOG_* levels; it is called on the publisher's thread.
    using Log = std::function<void(int level, const std::string& line)>;
    Publisher(Options options, Log log);
    ~Publisher();
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;

    void start();
    /// Publishes what is queued for up to `drain`, then closes the connection; what is still
    /// unconfirmed is dropped (counted, done(false)).
    void stop(std::chrono::milliseconds drain);
    /// Queues a message; never blocks. When the queue is over its byte bound, the oldest waiting
    /// messages are dropped (counted, done(false)); false when `m` alone is larger than it.
    bool publish(Message m);
    /// Queues a message only when it fits in the byte bound; false (nothing dropped, `m`
    /// untouched) when it does not: the caller offers it again later.
    bool tryPublish(Message& m);

    const Stats& stats() const { return stats_; }

  private:
    struct Link;
    void run();
    bool connect(Link& c, std::string& why);
    void disconnect(Link& c, const std::string& why);
    bool pump(Link& c, std::string& why);
    void requeueInFlight();
    void putBack(std::deque<Message>& msgs);
    void dropAll(std::deque<Message>& q);
    void finish(Message& m, bool delivered);

    Options opt_;
    Log log_;
    Stats stats_;
    OwnerThread owner_;          // the connection's thread; its mutex guards the rest
    std::deque<Message> queue_;  // waiting (owner_.mu)
    // Published, unconfirmed, in delivery-tag order from flightTag_ (thread only): tags of a
    // channel are consecutive, so a confirm finds its message by subtraction. A message
    // confirmed out of order leaves an empty place (open = false) until those before it go.
    struct Flight {
        Message m;
        bool open = true;
        bool returned = false;  // the broker returned it: no queue took it
    };
    std::deque<Flight> flight_;
    uint64_t flightTag_ = 1;  // delivery tag of flight_.front()
    size_t flightOpen_ = 0;   // open places in flight_
    Retry retry_;             // backoff and its log (thread only)
    // Returned records waiting to be published again (retryUnroutable; thread only), and when
    std::deque<Message> held_;
    std::chrono::steady_clock::time_point heldUntil_{};
};

}  // namespace mp::amqp
