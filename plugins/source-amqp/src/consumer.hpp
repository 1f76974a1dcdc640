// SPDX-License-Identifier: Apache-2.0
// An AMQP 0-9-1 consumer (rabbitmq-c) on a thread of its own, the one thread that touches the
// connection. Messages are handed over one at a time, in the queue's order, each with a number
// (its handle) that only grows; a message is acknowledged to the broker only once ack() has
// covered its handle, so whatever was not acknowledged when the link breaks or the process dies
// is delivered again by the broker (at least once; the broker marks it redelivered). At most
// `prefetch` messages are unacknowledged at once (basic.qos). After a broken link: reconnect
// with backoff, the queue declared and bound again, consumption resumed.
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
#include <vector>

namespace mp::amqp {

struct ConsumerOptions {
    Endpoint endpoint;
    std::string queue = "mysqlprobe";
    enum class Declare { Declare, Passive, None } declareQueue = Declare::Declare;  // durable
    std::string exchange;  // the queue is bound to it ("": no binding)
    std::string exchangeType = "topic";
    bool declareExchange = true;                // durable, when `exchange` is set
    std::vector<std::string> bindingKeys{"#"};  // one binding per key
    uint16_t prefetch = 1000;                   // unacknowledged messages at most
    int reconnectMinMs = 100;
    int reconnectMaxMs = 5000;
};

/// One message as it came.
struct Delivery {
    std::string exchange;
    std::string routingKey;
    std::string messageId;
    std::string type;
    std::string contentType;
    std::string body;
    uint64_t timestampS = 0;  // AMQP `timestamp`; 0: not set
    bool redelivered = false;
};

struct ConsumerStats {
    std::atomic<uint64_t> consumed{0};     // messages handed over
    std::atomic<uint64_t> redelivered{0};  // of which the broker had delivered before
    std::atomic<uint64_t> acked{0};        // acknowledged to the broker
    std::atomic<uint64_t> rejected{0};     // refused by the handler (basic.reject, no requeue)
    std::atomic<uint64_t> reconnects{0};
    std::atomic<uint64_t> failures{0};  // failed attempts and broken links
    std::atomic<int64_t> connected{0};  // 1 while consuming
    std::atomic<int64_t> unacked{0};    // handed over, not yet acknowledged
};

class Consumer {
  public:
    enum class Verdict {
        Taken,   // handed over: acknowledged once ack() covers its handle
        Reject,  // refused for good: rejected without requeue (dead-lettered if so configured)
        Stop,    // not handed over, and no more: the consumer stops taking messages
    };
    /// Called on the consumer's thread with each message and its handle (1, 2, 3...); it may
    /// block (the queue then waits, within the prefetch window).
    using Handler = std::function<Verdict(Delivery& d, uint64_t handle)>;
    using Log = std::function<void(int level, const std::string& line)>;

    Consumer(ConsumerOptions options, Log log, Handler handler);
    ~Consumer();
    Consumer(const Consumer&) = delete;
    Consumer& operator=(const Consumer&) = delete;

    void start();
    /// Stops taking messages (basic.cancel), acknowledges what ack() covers for up to `drain`,
    /// then closes: what is not acknowledged goes back to the queue.
    void stop(std::chrono::milliseconds drain);
    /// Every message handed over with a handle up to `handle` may be acknowledged. Any thread;
    /// handles of a connection that is gone are ignored (the broker queued them again).
    void ack(uint64_t handle);

    const ConsumerStats& stats() const { return stats_; }

  private:
    bool connect(std::string& why);
    bool consumeOne(std::string& why);  // false: the link is unusable (why)
    bool sendAcks(std::string& why);
    void run();

    ConsumerOptions opt_;
    Log log_;
    Handler handler_;
    ConsumerStats stats_;
    Connection conn_;     // consumer thread only
    Retry retry_;         // consumer thread only
    bool taking_ = true;  // consumer thread only: false after Verdict::Stop or a cancel

    OwnerThread owner_;        // the connection's thread; its mutex guards the rest
    uint64_t nextHandle_ = 1;  // consumer thread (read under owner_.mu)
    std::deque<std::pair<uint64_t, uint64_t>> unacked_;  // (handle, delivery tag), this link
    uint64_t ackUpTo_ = 0;                               // highest handle ack() allowed
};

}  // namespace mp::amqp
