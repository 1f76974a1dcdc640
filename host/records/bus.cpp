// SPDX-License-Identifier: Apache-2.0
#include "records/bus.hpp"

#include <mp/sdk.hpp>

#include "config/config.hpp"
#include "core/log.hpp"

namespace mp::host {

// One record, held once for every sink that takes it.
struct RecordBus::Rec {
    // stream, key, id, content type and payload, one after the other in one allocation (a
    // record crosses threads: each malloc freed by another thread contends for its arena)
    std::string data;
    uint32_t streamLen = 0, keyLen = 0, idLen = 0, typeLen = 0;
    std::string_view field(size_t at, size_t len) const {
        return std::string_view(data).substr(at, len);
    }
    std::string_view stream() const { return field(0, streamLen); }
    uint64_t ts = 0;
    uint64_t seq = 0;
    Producer* producer = nullptr;
    size_t bytes = 0;
    std::atomic<int> remaining{0};  // sinks not done yet
    std::atomic<bool> failed{false};
    bool settled = false;   // every sink done (producer's mutex)
    bool inBudget = false;  // its bytes count in the budget (it went to a sink)

    mp_record view() const;
};

struct RecordBus::Producer {
    ProducerPort port;
    std::mutex mu;
    uint64_t lastSeq = 0;                              // the last seq taken
    std::map<uint64_t, std::shared_ptr<Rec>> pending;  // taken, in seq order, until marked
    uint64_t delivered = 0;                            // the delivered mark
    uint64_t notified = 0;                             // the mark last given to the producer
    bool stuck = false;                                // a record failed: the mark stays
    std::atomic<bool> closed{false};                   // stopping: no waiting for room
};

struct RecordBus::Sink {
    SinkPort port;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::shared_ptr<Rec>> queue;
    std::thread thread;
};

mp_record RecordBus::Rec::view() const {
    mp_record r{};
    r.struct_size = sizeof r;
    const char* d = data.data();
    size_t at = 0;
    r.stream = mp_str{d, streamLen};
    at += streamLen;
    r.key = mp_str{d + at, keyLen};
    at += keyLen;
    r.id = mp_str{d + at, idLen};
    at += idLen;
    r.content_type = mp_str{d + at, typeLen};
    at += typeLen;
    r.payload = mp_bytes{reinterpret_cast<const uint8_t*>(d + at), data.size() - at};
    r.ts_ns = ts;
    r.seq = seq;
    r.producer = mp_str{producer->port.slot.data(), producer->port.slot.size()};
    return r;
}

RecordBus::RecordBus(size_t maxBufferedBytes, Metrics& metrics)
    : maxBytes_(maxBufferedBytes),
      accepted_(metrics.get("host", "records_accepted_total", "records taken from producers",
                            MP_COUNTER)),
      dropped_(metrics.get("host", "records_dropped_total",
                           "records refused (buffer full, policy drop) or not delivered at stop",
                           MP_COUNTER)),
      unrouted_(metrics.get("host", "records_unrouted_total",
                            "records of a stream no sink subscribes to", MP_COUNTER)),
      delivered_(metrics.get("host", "records_delivered_total",
                             "records a sink delivered (one per sink)", MP_COUNTER)),
      failed_(metrics.get("host", "records_failed_total",
                          "records a sink gave up (their producer's delivered mark stops there)",
                          MP_COUNTER)),
      retries_(metrics.get("host", "records_retries_total",
                           "records offered again because a sink was full", MP_COUNTER)),
      bufferedGauge_(metrics.get("host", "records_buffered_bytes",
                                 "bytes of records held until every sink is done", MP_GAUGE)) {}

RecordBus::~RecordBus() {
    stopDelivery(std::chrono::milliseconds(0));
    finish();
}

RecordBus::Sink* RecordBus::addSink(SinkPort port) {
    auto s = std::make_unique<Sink>();
    s->port = std::move(port);
    sinks_.push_back(std::move(s));
    return sinks_.back().get();
}

RecordBus::Producer* RecordBus::addProducer(ProducerPort port) {
    auto p = std::make_unique<Producer>();
    p->port = std::move(port);
    producers_.push_back(std::move(p));
    return producers_.back().get();
}

void RecordBus::setPolicy(Producer* p, Policy policy) { p->port.policy = policy; }

void RecordBus::closeProducer(Producer* p) {
    {
        std::lock_guard<std::mutex> lock(budgetMu_);  // a waiter sees it or is woken
        p->closed = true;
    }
    budgetCv_.notify_all();
}

void RecordBus::start() {
    for (auto& s : sinks_) {
        Sink* raw = s.get();
        s->thread = std::thread([this, raw] { sinkLoop(raw); });
    }
    ackThread_ = std::thread([this] { ackLoop(); });
}

mp_status RecordBus::emit(Producer* p, const mp_record& rec) {
    std::string_view stream = mp::view(rec.stream);
    if (!validStreamName(stream) || rec.key.len > 255 || rec.id.len > 255 ||
        rec.content_type.len > 255 || (rec.payload.data == nullptr && rec.payload.len != 0)) {
        return MP_EINVAL;
    }
    std::vector<Sink*> to;
    for (auto& s : sinks_) {
        for (const auto& pattern : s->port.patterns) {
            if (streamMatches(pattern, stream)) {
                to.push_back(s.get());
                break;
            }
        }
    }
    auto r = std::make_shared<Rec>();
    r->bytes = rec.payload.len + stream.size() + rec.key.len + rec.id.len + rec.content_type.len +
               sizeof(Rec);
    if (!to.empty() && r->bytes > maxBytes_) {
        dropped_->value.fetch_add(1, std::memory_order_relaxed);
        return MP_EINVAL;  // larger than the whole buffer
    }
    {
        std::lock_guard<std::mutex> lock(p->mu);
        if (rec.seq <= p->lastSeq) {
            return MP_EINVAL;
        }
    }
    // Room in the budget: taken without a lock while there is some (the common case), else
    // refused (Drop) or waited for (Wait) under the lock.
    bool reserved = false;
    if (!to.empty()) {
        int64_t cur = buffered_.load();
        while (static_cast<size_t>(cur) + r->bytes <= maxBytes_ &&
               !(reserved =
                     buffered_.compare_exchange_weak(cur, cur + static_cast<int64_t>(r->bytes)))) {
        }
        if (reserved) {
            bufferedGauge_->value.store(buffered_.load(), std::memory_order_relaxed);
            r->inBudget = true;
        }
    }
    if (!to.empty() && !reserved) {
        std::unique_lock<std::mutex> lock(budgetMu_);
        auto fits = [&] { return static_cast<size_t>(buffered_.load()) + r->bytes <= maxBytes_; };
        if (!fits()) {
            if (p->port.policy == Policy::Drop) {
                dropped_->value.fetch_add(1, std::memory_order_relaxed);
                return MP_EAGAIN;
            }
            // Woken once the buffer is down to three quarters: a producer faster than its sinks
            // then sends in bursts instead of waking for every record settled.
            ++waiters_;
            budgetCv_.wait(lock, [&] {
                return stopping_.load() || p->closed.load() ||
                       static_cast<size_t>(buffered_.load()) + r->bytes <=
                           std::max(lowWater(), r->bytes);
            });
            --waiters_;
            if (!fits()) {
                return MP_ECLOSED;
            }
        }
        buffered_ += static_cast<int64_t>(r->bytes);
        bufferedGauge_->value.store(buffered_.load(), std::memory_order_relaxed);
        r->inBudget = true;
    }
    r->data.reserve(stream.size() + rec.key.len + rec.id.len + rec.content_type.len +
                    rec.payload.len);
    r->data.append(stream);
    r->data.append(mp::view(rec.key));
    r->data.append(mp::view(rec.id));
    r->data.append(mp::view(rec.content_type));
    r->data.append(reinterpret_cast<const char*>(rec.payload.data), rec.payload.len);
    r->streamLen = static_cast<uint32_t>(stream.size());
    r->keyLen = static_cast<uint32_t>(rec.key.len);
    r->idLen = static_cast<uint32_t>(rec.id.len);
    r->typeLen = static_cast<uint32_t>(rec.content_type.len);
    r->ts = rec.ts_ns;
    r->seq = rec.seq;
    r->producer = p;
    r->remaining = static_cast<int>(to.size());
    {
        std::lock_guard<std::mutex> lock(p->mu);
        if (rec.seq <= p->lastSeq) {  // another thread of the producer got there first
            if (r->inBudget) {
                std::lock_guard<std::mutex> budget(budgetMu_);
                buffered_ -= static_cast<int64_t>(r->bytes);
            }
            return MP_EINVAL;
        }
        p->lastSeq = rec.seq;
        p->pending.emplace(rec.seq, r);
    }
    accepted_->value.fetch_add(1, std::memory_order_relaxed);
    if (to.empty()) {
        unrouted_->value.fetch_add(1, std::memory_order_relaxed);
        settle(r);  // nobody wants it: nothing to lose
        return MP_OK;
    }
    for (Sink* s : to) {
        bool wasEmpty = false;
        {
            std::lock_guard<std::mutex> lock(s->mu);
            wasEmpty = s->queue.empty();
            s->queue.push_back(r);
        }
        // A sink thread waits only on an empty queue: records added behind others need no
        // wake-up (one futex call per record otherwise, when the sink keeps up).
        if (wasEmpty) {
            s->cv.notify_one();
        }
    }
    return MP_OK;
}

void RecordBus::sinkLoop(Sink* s) {
    auto backoff = std::chrono::milliseconds(1);
    while (true) {
        std::shared_ptr<Rec> r;
        {
            std::unique_lock<std::mutex> lock(s->mu);
            s->cv.wait(lock, [&] { return !s->queue.empty() || !delivering_.load(); });
            if (!delivering_.load()) {
                break;
            }
            r = s->queue.front();
        }
        uint64_t token = 0;
        {
            std::lock_guard<std::mutex> lock(tokenMu_);
            token = nextToken_++;
            tokens_.emplace(token, std::make_pair(r, s));
        }
        mp_record view = r->view();
        mp_status st = s->port.deliver(view, token);
        if (st == MP_EAGAIN) {
            {
                std::lock_guard<std::mutex> lock(tokenMu_);
                tokens_.erase(token);
            }
            retries_->value.fetch_add(1, std::memory_order_relaxed);
            std::unique_lock<std::mutex> lock(s->mu);
            s->cv.wait_for(lock, backoff, [&] { return !delivering_.load(); });
            backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
            continue;
        }
        backoff = std::chrono::milliseconds(1);
        {
            std::lock_guard<std::mutex> lock(s->mu);
            s->queue.pop_front();
        }
        if (st != MP_OK) {
            done(token, st);  // refused: given up (a token it did not keep)
        }
    }
    // Stopping: what this sink did not take is given up.
    std::deque<std::shared_ptr<Rec>> left;
    {
        std::lock_guard<std::mutex> lock(s->mu);
        left.swap(s->queue);
    }
    if (!left.empty()) {
        log(MP_LOG_WARN, "host",
            s->port.name + ": " + std::to_string(left.size()) +
                " records not delivered at stop (records_dropped_total)");
    }
    for (auto& r : left) {
        dropped_->value.fetch_add(1, std::memory_order_relaxed);
        r->failed = true;
        if (--r->remaining == 0) {
            settle(r);
        }
    }
}

void RecordBus::done(uint64_t token, mp_status status) {
    std::shared_ptr<Rec> r;
    Sink* s = nullptr;
    {
        std::lock_guard<std::mutex> lock(tokenMu_);
        auto it = tokens_.find(token);
        if (it == tokens_.end()) {
            return;  // unknown or already done: exactly once per token
        }
        r = it->second.first;
        s = it->second.second;
        tokens_.erase(it);
    }
    if (status == MP_OK) {
        delivered_->value.fetch_add(1, std::memory_order_relaxed);
    } else {
        failed_->value.fetch_add(1, std::memory_order_relaxed);
        if (!r->failed.exchange(true)) {
            log(MP_LOG_WARN, "host",
                s->port.name + " gave up record " + std::to_string(r->seq) + " of " +
                    r->producer->port.slot + " (stream " + std::string(r->stream()) + ", status " +
                    std::to_string(status) + ")");
        }
    }
    if (--r->remaining == 0) {
        settle(r);
    }
}

// Every sink is done with `r`: its bytes leave the budget and its producer's mark moves on
// over every settled record in seq order, stopping for good at one that failed.
void RecordBus::settle(const std::shared_ptr<Rec>& r) {
    if (r->inBudget) {
        // Without the lock: a producer that waits has counted itself in waiters_ (under the
        // lock) before it tests the budget, so either it sees these bytes gone or it is woken.
        buffered_ -= static_cast<int64_t>(r->bytes);
        bufferedGauge_->value.store(buffered_.load(), std::memory_order_relaxed);
        if (waiters_.load() != 0 && static_cast<size_t>(buffered_.load()) <= lowWater()) {
            { std::lock_guard<std::mutex> lock(budgetMu_); }
            budgetCv_.notify_all();
        }
    }
    Producer* p = r->producer;
    bool wake = false;
    {
        std::lock_guard<std::mutex> lock(p->mu);
        r->settled = true;
        while (!p->stuck && !p->pending.empty() && p->pending.begin()->second->settled) {
            const auto& front = p->pending.begin()->second;
            if (front->failed) {
                p->stuck = true;
                log(MP_LOG_WARN, "host",
                    p->port.slot + ": its delivered mark stays at " + std::to_string(p->delivered) +
                        ": record " + std::to_string(front->seq) + " was not delivered");
                break;
            }
            p->delivered = front->seq;
            p->pending.erase(p->pending.begin());
            wake = true;
        }
        if (p->stuck) {  // the mark moves no more: hold no settled record for it
            for (auto it = p->pending.begin(); it != p->pending.end();) {
                it = it->second->settled ? p->pending.erase(it) : std::next(it);
            }
        }
    }
    // The ack thread looks every 20 ms anyway; waking it for every record settled costs a
    // futex call per record: at most one wake-up per 5 ms.
    if (wake) {
        const int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now().time_since_epoch())
                                .count();
        int64_t last = lastAckWakeUs_.load(std::memory_order_relaxed);
        if (now - last >= 5000 &&
            lastAckWakeUs_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
            ackCv_.notify_one();
        }
    }
}

void RecordBus::ackLoop() {
    std::unique_lock<std::mutex> lock(ackMu_);
    while (true) {
        ackCv_.wait_for(lock, std::chrono::milliseconds(20));
        bool stop = ackStop_;
        lock.unlock();
        for (auto& p : producers_) {
            uint64_t mark = 0;
            {
                std::lock_guard<std::mutex> pl(p->mu);
                if (p->delivered <= p->notified) {
                    continue;
                }
                mark = p->delivered;
                p->notified = mark;
            }
            if (p->port.delivered) {
                p->port.delivered(mark);
            }
        }
        lock.lock();
        if (stop) {
            break;
        }
    }
}

void RecordBus::stopDelivery(std::chrono::milliseconds drain) {
    if (!delivering_.load()) {
        return;
    }
    stopping_ = true;
    budgetCv_.notify_all();
    auto until = std::chrono::steady_clock::now() + drain;
    while (std::chrono::steady_clock::now() < until) {
        bool empty = true;
        for (auto& s : sinks_) {
            std::lock_guard<std::mutex> lock(s->mu);
            empty = empty && s->queue.empty();
        }
        {
            std::lock_guard<std::mutex> lock(tokenMu_);
            empty = empty && tokens_.empty();
        }
        if (empty) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    delivering_ = false;
    for (auto& s : sinks_) {
        s->cv.notify_all();
    }
    for (auto& s : sinks_) {
        if (s->thread.joinable()) {
            s->thread.join();
        }
    }
}

void RecordBus::finish() {
    {
        std::lock_guard<std::mutex> lock(ackMu_);
        if (ackStop_ || !ackThread_.joinable()) {
            ackStop_ = true;
            return;
        }
        ackStop_ = true;
    }
    ackCv_.notify_all();
    ackThread_.join();
}

}  // namespace mp::host
