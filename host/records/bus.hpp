// SPDX-License-Identifier: Apache-2.0
// Records between producers and sinks (ABI 1.4): a record emitted by a producer goes to every
// sink whose subscription matches its stream, in the order the producer emitted it, through one
// delivery thread per sink. Sinks say when a record is delivered (record_done); the bus tells
// each producer, in order, the highest seq up to which every record was delivered by every
// sink that took it (its delivered mark), on one thread of its own.
//
// Memory: records are held, once whatever the number of sinks, until every sink that took them
// is done and the producer's mark has passed them; their bytes (payload, names and the record's
// own bookkeeping) are bounded by one budget (beyond it, each producer's arena keeps at most
// two blocks of 256 KiB and the unused ends of full ones, under an eighth of each). When it is
// full a producer's policy decides: Drop (captures, decoders: never block; the record is
// refused and counted) or Wait (sources: block until there is room, which pauses whatever they
// read from).
//
// Cost: the bus is on the path of every record (a binlog source emits hundreds of thousands a
// second), so no lock is taken per record by two threads at once in the common case: a producer
// that emits a batch (emit_records) has a run of records on one stream taken under one lock of
// its own and queued to each sink under one lock of the sink's; a sink's
// thread takes its whole queue in one lock and registers its tokens a chunk at a time; done()
// only counts down; the producer's mark moves under the producer's own lock, taken by the
// producer when it emits and by the ack thread every few milliseconds. A record is one piece
// of its producer's arena (blocks used again once their records have left: no malloc per
// record), owned by its producer's pending run alone (no reference count travels between
// threads); what each side writes for every record sits on cache lines of its own; a thread's
// last stream keeps its route (no pattern matched again, record after record).
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/metrics.hpp"

namespace mp::host {

class RecordBus {
  public:
    enum class Policy { Drop, Wait };

    /// A sink as the bus sees it: its name for logs, its subscriptions and how to hand it one
    /// record (the sink's on_record, through the dispatcher).
    struct SinkPort {
        std::string name;                   // "sinks[1] (sink-amqp)"
        std::vector<std::string> patterns;  // stream names or patterns (config validStreamPattern)
        std::function<mp_status(const mp_record&, uint64_t token)> deliver;
    };
    /// A producer: its slot (given to sinks as mp_record.producer), its policy and where its
    /// delivered mark goes (may be empty).
    struct ProducerPort {
        std::string slot;
        Policy policy = Policy::Drop;
        std::function<void(uint64_t seq)> delivered;
    };

    struct Producer;
    struct Sink;

    RecordBus(size_t maxBufferedBytes, Metrics& metrics);
    ~RecordBus();
    RecordBus(const RecordBus&) = delete;
    RecordBus& operator=(const RecordBus&) = delete;

    // Set-up, before start().
    Sink* addSink(SinkPort port);
    Producer* addProducer(ProducerPort port);
    /// The policy a producer declared in create() (host_set "records.backpressure").
    static void setPolicy(Producer* p, Policy policy);

    /// True when some sink subscribes to a stream (no sink: the bus is not needed).
    bool hasSinks() const { return !sinks_.empty(); }

    void start();
    /// One record from `p` (copied). MP_OK, MP_EAGAIN (buffer full, policy Drop: dropped and
    /// counted), MP_ECLOSED (stopping), MP_EINVAL (stream name, seq, size).
    mp_status emit(Producer* p, const mp_record& rec);
    /// `n` records from `p`, in order, as many emit() calls would take them but a run of records
    /// on one stream under one lock (emit_records). Stops at the first record not taken, with its
    /// status; `taken`: how many were taken before it (all of them: MP_OK).
    mp_status emit(Producer* p, const mp_record* const* recs, size_t n, size_t& taken);
    /// The producer is stopping: it no longer waits for room (a wait under way ends, MP_ECLOSED,
    /// so that its stop() can join a thread blocked in emit_record); what fits is still taken.
    void closeProducer(Producer* p);
    /// A sink is done with the record it was given with `token`.
    void done(uint64_t token, mp_status status);

    /// At stop, once producers have stopped: waits up to `drain` for every held record to be
    /// delivered, then stops the sinks' delivery threads (what they did not take is dropped,
    /// counted). Records a sink took and finishes later (in its own stop) still count.
    void stopDelivery(std::chrono::milliseconds drain);
    /// After the sinks stopped: the last delivered marks go out; the ack thread ends.
    void finish();

    size_t bufferedBytes() const { return static_cast<size_t>(buffered_.load()); }

  private:
    class Arena;
    struct Rec;
    struct RecFree {
        void operator()(Rec* r) const noexcept;
    };
    using RecPtr = std::unique_ptr<Rec, RecFree>;
    static constexpr size_t kFewSinks = 8;  // a record's sinks, this many without an allocation
    struct Targets {                        // the sinks of a stream
        Sink* fixed[kFewSinks] = {};
        std::vector<Sink*> more;
        size_t n = 0;
        Sink* at(size_t i) const { return i < kFewSinks ? fixed[i] : more[i - kFewSinks]; }
    };
    bool route(std::string_view stream, Targets& to) const;
    static size_t heldBytes(const mp_record& rec);
    mp_status emitRun(Producer* p, const mp_record* const* recs, size_t n, const Targets& to,
                      size_t& took);
    size_t reserve(const mp_record* const* recs, size_t n);
    mp_status waitAndBuild(Producer* p, const mp_record& rec, size_t nTo, Rec*& out);
    static Rec* build(Producer* p, const mp_record& rec, size_t nTo);  // p->mu held
    void sinkLoop(Sink* s);
    void settle(Rec* r);  // every sink is done with r (which may be freed at once after)
    static void append(Producer* p, uint64_t seq, RecPtr r);  // p->mu held
    void advance(Producer* p);                                // p->mu held
    static void trimTokens(Sink* s);                          // s->tokenMu held
    void release(int64_t bytes);
    void wakeAckThread(bool now);
    void ackLoop();

    struct Route;
    const uint64_t id_;  // unique in the process: emit()'s per-thread route cache names it
    size_t maxBytes_;
    std::vector<std::unique_ptr<Sink>> sinks_;
    std::vector<std::unique_ptr<Producer>> producers_;

    std::mutex budgetMu_;
    std::condition_variable budgetCv_;  // room in the budget, or stopping
    size_t lowWater() const { return maxBytes_ / 4 * 3; }
    // Cache lines apart: what the producers write for every record, what the sinks' threads
    // write for every record, and what both only read (a line written by one thread and read
    // by another for every record would travel between their cores each time).
    alignas(64) std::atomic<int64_t> buffered_{0};
    alignas(64) std::atomic<int64_t> outstanding_{0};  // tokens given to sinks, not done yet
    alignas(64) std::atomic<size_t> waiters_{0};  // producers waiting for room (under budgetMu_)
    std::atomic<bool> stopping_{false};           // producers may not wait any more
    std::atomic<bool> delivering_{true};          // sink threads run

    alignas(64) std::mutex ackMu_;
    std::condition_variable ackCv_;
    std::atomic<int64_t> lastAckWakeUs_{0};  // settle() wakes the ack thread at most every 5 ms
    bool ackStop_ = false;
    std::thread ackThread_;

    mp_counter* accepted_;
    mp_counter* dropped_;
    mp_counter* unrouted_;
    mp_counter* delivered_;
    mp_counter* failed_;
    mp_counter* retries_;
    mp_counter* bufferedGauge_;
};

}  // namespace mp::host
