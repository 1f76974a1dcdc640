// SPDX-License-Identifier: Apache-2.0
#include "records/bus.hpp"

#include <chrono>
#include <cstring>
#include <mp/sdk.hpp>
#include <thread>

#include "config/config.hpp"
#include "core/log.hpp"

namespace mp::host {

// A producer's records, carved one after another from blocks. They leave in the order they were
// taken (a producer's pending run is first in, first out, and both happen under its lock), so a
// block is used again as soon as its last record has left: no malloc and no free per record,
// and while the sinks keep up the same block comes round again, still in cache. Beyond the
// records it holds, an arena keeps at most its current block, one spare, and what the ends of
// full blocks could not take (under an eighth of them: larger records get a block each).
class RecordBus::Arena {
  public:
    struct Block {
        Arena* arena;
        size_t size;      // bytes behind this header
        size_t used = 0;  // carved from the start
        size_t live = 0;  // records in it that have not left
    };
    static constexpr size_t kBlockBytes = size_t{256} << 10;
    static constexpr size_t kOwnBlock = kBlockBytes / 8;  // larger records: a block each
    static constexpr size_t kAlign = alignof(std::max_align_t);
    static_assert(sizeof(Block) % kAlign == 0);

    Arena() = default;
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    ~Arena() {
        drop(current_);
        drop(spare_);
    }

    /// Room for `bytes` (one record), in block `in`.
    void* take(size_t bytes, Block*& in) {
        bytes = (bytes + kAlign - 1) / kAlign * kAlign;
        if (bytes > kOwnBlock) {
            // A block of its own, freed when it leaves: what a block cannot use at its end
            // (a record that does not fit there) stays under an eighth of the block.
            in = make(bytes);
            in->used = bytes;
            in->live = 1;
            return in + 1;
        }
        if (current_ == nullptr || current_->size - current_->used < bytes) {
            // The current block is full: it is left to its records (the last to leave parks
            // it), or parked now when none is in it.
            if (current_ != nullptr && current_->live == 0) {
                park(current_);
            }
            current_ = spare_ != nullptr ? std::exchange(spare_, nullptr) : make(kBlockBytes);
        }
        void* at = reinterpret_cast<char*>(current_ + 1) + current_->used;
        current_->used += bytes;
        ++current_->live;
        in = current_;
        return at;
    }

    /// One record of block `b` has left.
    void give(Block* b) {
        if (--b->live != 0) {
            return;
        }
        if (b == current_) {
            b->used = 0;  // nothing in it: carved again from its start
        } else {
            park(b);
        }
    }

  private:
    Block* make(size_t size) {
        void* mem = ::operator new(sizeof(Block) + size);
        return new (mem) Block{this, size};
    }
    static void drop(Block* b) {
        if (b != nullptr) {
            b->~Block();
            ::operator delete(b);
        }
    }
    // An empty block that is not the current one: the spare when there is none (and it has the
    // usual size), else freed.
    void park(Block* b) {
        if (b->size == kBlockBytes && spare_ == nullptr) {
            b->used = 0;
            spare_ = b;
        } else {
            drop(b);
        }
    }

    Block* current_ = nullptr;
    Block* spare_ = nullptr;
};

// One record, held once for every sink that takes it. Its producer's pending run owns it (the
// sinks' queues and token tables point at it): it leaves once every sink is done (settled) and
// the producer's mark has passed it, given back to the producer's arena by the thread that
// moves the mark. No count of references goes back and forth between the producer's thread
// and the sinks'.
struct RecordBus::Rec {
    // stream, key, id, content type and payload, one after the other, right behind the record
    // in the same piece of the producer's arena
    char* data = nullptr;
    size_t dataLen = 0;
    uint32_t streamLen = 0, keyLen = 0, idLen = 0, typeLen = 0;
    std::string_view field(size_t at, size_t len) const {
        return std::string_view(data, dataLen).substr(at, len);
    }
    std::string_view stream() const { return field(0, streamLen); }
    uint64_t ts = 0;
    uint64_t seq = 0;
    Producer* producer = nullptr;
    Arena::Block* block = nullptr;  // where it lies in its producer's arena
    size_t bytes = 0;               // what it holds: data, this struct, its places in queues
    std::atomic<int> remaining{0};  // sinks not done yet
    std::atomic<bool> failed{false};
    std::atomic<bool> settled{false};  // every sink done

    mp_record view() const;

    // THREADING: the producer's lock held (its arena).
    static Rec* make(Arena& arena, size_t dataBytes) {
        Arena::Block* block = nullptr;
        void* mem = arena.take(sizeof(Rec) + dataBytes, block);
        Rec* r = new (mem) Rec;
        r->block = block;
        r->data = reinterpret_cast<char*>(r + 1);
        r->dataLen = dataBytes;
        return r;
    }
};

// THREADING: the producer's lock held (advance), or the producer being destroyed.
void RecordBus::RecFree::operator()(Rec* r) const noexcept {
    Arena::Block* block = r->block;
    r->~Rec();
    block->arena->give(block);
}

struct RecordBus::Producer {
    ProducerPort port;
    std::mutex mu;
    Arena arena;  // where its records lie (under mu); declared before `pending`, outlives it
    std::atomic<uint64_t> lastSeq{0};  // the last seq taken (written under mu)
    // Taken, in seq order, until the mark passes; `rec` empty: records no sink took, up to
    // `seq` (consecutive ones share one entry, so they cost nothing while a record waits).
    struct Entry {
        uint64_t seq = 0;
        RecPtr rec;
    };
    std::deque<Entry> pending;
    uint64_t delivered = 0;           // the delivered mark
    uint64_t notified = 0;            // the mark last given to the producer
    bool stuck = false;               // a record failed: the mark stays
    std::atomic<bool> closed{false};  // stopping: no waiting for room
};

// A token is the sink's index (high 16 bits, from 1) and its place in that sink's run of tokens
// (low 48 bits): done() finds its record without a shared table.
constexpr int kTokenShift = 48;
constexpr uint64_t kTokenPlace = (uint64_t{1} << kTokenShift) - 1;

struct RecordBus::Sink {
    SinkPort port;
    size_t index = 0;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Rec*> queue;         // not offered yet (held by their producers' pending runs)
    std::atomic<size_t> inHand{0};  // taken from the queue by the thread, not yet offered
    std::thread thread;
    // Tokens given and not done: places base .. base + tokens.size() - 1; a done one is empty.
    std::mutex tokenMu;
    uint64_t base = 1;
    std::deque<Rec*> tokens;
};

namespace {
std::atomic<uint64_t> nextBusId{1};
}  // namespace

mp_record RecordBus::Rec::view() const {
    mp_record r{};
    r.struct_size = sizeof r;
    const char* d = data;
    size_t at = 0;
    r.stream = mp_str{d, streamLen};
    at += streamLen;
    r.key = mp_str{d + at, keyLen};
    at += keyLen;
    r.id = mp_str{d + at, idLen};
    at += idLen;
    r.content_type = mp_str{d + at, typeLen};
    at += typeLen;
    r.payload = mp_bytes{reinterpret_cast<const uint8_t*>(d + at), dataLen - at};
    r.ts_ns = ts;
    r.seq = seq;
    r.producer = mp_str{producer->port.slot.data(), producer->port.slot.size()};
    return r;
}

RecordBus::RecordBus(size_t maxBufferedBytes, Metrics& metrics)
    : id_(nextBusId.fetch_add(1)),
      maxBytes_(maxBufferedBytes),
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
    s->index = sinks_.size();
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

// The sinks of one stream name, as route() last found them on a thread.
struct RecordBus::Route {
    uint64_t bus = 0;  // the bus's id_; 0: nothing kept
    std::string stream;
    Sink* sinks[kFewSinks] = {};
    size_t n = 0;
};

// The sinks a stream goes to. A producer emits on a few streams, record after record: the sinks
// of the last stream this thread emitted on for this bus are kept (checked by the bus's id,
// never by its address), and a name kept was valid. False: not a stream name.
bool RecordBus::route(std::string_view stream, Targets& to) const {
    thread_local Route last;
    if (last.bus == id_ && last.stream == stream) {
        to.n = last.n;
        std::copy(last.sinks, last.sinks + to.n, to.fixed);
        return true;
    }
    if (!validStreamName(stream)) {
        return false;
    }
    to.n = 0;
    for (const auto& s : sinks_) {
        for (const auto& pattern : s->port.patterns) {
            if (streamMatches(pattern, stream)) {
                if (to.n < std::size(to.fixed)) {
                    to.fixed[to.n] = s.get();
                } else {
                    to.more.push_back(s.get());
                }
                ++to.n;
                break;
            }
        }
    }
    if (to.n <= std::size(to.fixed)) {
        last.bus = id_;
        last.stream.assign(stream);
        last.n = to.n;
        std::copy(to.fixed, to.fixed + to.n, last.sinks);
    }
    return true;
}

namespace {
// What the bus checks of a record beyond its stream and its seq.
bool wellFormed(const mp_record& rec) {
    return rec.key.len <= 255 && rec.id.len <= 255 && rec.content_type.len <= 255 &&
           (rec.payload.data != nullptr || rec.payload.len == 0);
}
size_t dataBytes(const mp_record& rec) {
    return rec.stream.len + rec.key.len + rec.id.len + rec.content_type.len + rec.payload.len;
}
}  // namespace

size_t RecordBus::heldBytes(const mp_record& rec) {
    // what a held record costs beyond its data: the struct (in the same piece of the arena), its
    // place in the producer's and the sinks' queues
    return dataBytes(rec) + sizeof(Rec) + 64;
}

mp_status RecordBus::emit(Producer* p, const mp_record& rec) {
    const mp_record* one = &rec;
    size_t taken = 0;
    return emit(p, &one, 1, taken);
}

mp_status RecordBus::emit(Producer* p, const mp_record* const* recs, size_t n, size_t& taken) {
    taken = 0;
    while (taken < n) {
        // A run of records on one stream: routed once, taken under one lock of the producer.
        const std::string_view stream = mp::view(recs[taken]->stream);
        Targets to;
        if (!route(stream, to)) {
            return MP_EINVAL;
        }
        size_t end = taken;
        bool bad = false, tooLarge = false;
        for (; end < n; ++end) {
            const mp_record& rec = *recs[end];
            if (end > taken && mp::view(rec.stream) != stream) {
                break;  // the next run
            }
            // (the run's first seq is checked against the producer's last under its lock)
            bad = !wellFormed(rec) || (end > taken && rec.seq <= recs[end - 1]->seq);
            tooLarge = !bad && to.n != 0 && heldBytes(rec) > maxBytes_;
            if (bad || tooLarge) {
                break;
            }
        }
        size_t took = 0;
        const mp_status st = end > taken ? emitRun(p, recs + taken, end - taken, to, took) : MP_OK;
        taken += took;
        if (st != MP_OK) {
            return st;
        }
        if (tooLarge) {
            dropped_->value.fetch_add(1, std::memory_order_relaxed);  // larger than the buffer
        }
        if (bad || tooLarge) {
            return MP_EINVAL;
        }
    }
    return MP_OK;
}

// `n` records of one stream, well-formed, their seqs increasing, to the sinks `to`.
mp_status RecordBus::emitRun(Producer* p, const mp_record* const* recs, size_t n, const Targets& to,
                             size_t& took) {
    took = 0;
    if (to.n == 0) {  // nobody wants them: nothing to hold, nothing to lose
        {
            std::lock_guard<std::mutex> lock(p->mu);
            if (recs[0]->seq <= p->lastSeq.load()) {
                return MP_EINVAL;  // not above the last (or another thread of it got there first)
            }
            for (size_t i = 0; i < n; ++i) {
                append(p, recs[i]->seq, nullptr);
            }
        }
        accepted_->value.fetch_add(n, std::memory_order_relaxed);
        unrouted_->value.fetch_add(n, std::memory_order_relaxed);
        wakeAckThread(false);
        took = n;
        return MP_OK;
    }
    // Taken a chunk at a time: as many records as the budget has room for are reserved in one
    // step and carved and filled under one lock of the producer (its arena's guard; only the ack
    // thread also takes it, every few milliseconds), then queued to each sink under one lock.
    constexpr size_t kChunk = 64;
    Rec* built[kChunk];
    while (took < n) {
        const mp_record* const* chunk = recs + took;
        const size_t want = std::min(n - took, kChunk);
        size_t got = 0;
        {
            std::lock_guard<std::mutex> lock(p->mu);
            if (chunk[0]->seq <= p->lastSeq.load()) {
                return MP_EINVAL;  // not above the last (or another thread of it got there first)
            }
            advance(p);  // records the mark has passed leave first
            got = reserve(chunk, want);
            for (size_t i = 0; i < got; ++i) {
                built[i] = build(p, *chunk[i], to.n);
            }
        }
        if (got == 0) {  // no room now: the producer's policy decides, for one record
            const mp_status st = waitAndBuild(p, *chunk[0], to.n, built[0]);
            if (st != MP_OK) {
                return st;
            }
            got = 1;
        }
        bufferedGauge_->value.store(buffered_.load(), std::memory_order_relaxed);
        accepted_->value.fetch_add(got, std::memory_order_relaxed);
        for (size_t i = 0; i < to.n; ++i) {
            Sink* s = to.at(i);
            bool wasEmpty = false;
            {
                std::lock_guard<std::mutex> lock(s->mu);
                wasEmpty = s->queue.empty();
                s->queue.insert(s->queue.end(), built, built + got);
            }
            // A sink thread waits only on an empty queue: records added behind others need no
            // wake-up (one futex call per record otherwise, when the sink keeps up).
            if (wasEmpty) {
                s->cv.notify_one();
            }
        }
        took += got;
    }
    return MP_OK;
}

// Room in the budget for the first records of `recs` (up to n), reserved in one step without
// waiting: how many.
size_t RecordBus::reserve(const mp_record* const* recs, size_t n) {
    int64_t cur = buffered_.load();
    while (true) {
        size_t sum = 0, fit = 0;
        for (; fit < n; ++fit) {
            const size_t bytes = heldBytes(*recs[fit]);
            if (static_cast<size_t>(cur) + sum + bytes > maxBytes_) {
                break;
            }
            sum += bytes;
        }
        if (fit == 0 || buffered_.compare_exchange_weak(cur, cur + static_cast<int64_t>(sum))) {
            return fit;
        }
    }
}

// The buffer is full: refused (Drop) or waited for (Wait), then carved and filled.
mp_status RecordBus::waitAndBuild(Producer* p, const mp_record& rec, size_t nTo, Rec*& out) {
    const size_t bytes = heldBytes(rec);
    const mp_record* one = &rec;
    std::unique_lock<std::mutex> lock(budgetMu_);
    if (reserve(&one, 1) == 0) {
        if (p->port.policy == Policy::Drop) {
            dropped_->value.fetch_add(1, std::memory_order_relaxed);
            wakeAckThread(false);  // settled records of other producers may hold the room
            return MP_EAGAIN;
        }
        // Woken once the buffer is down to three quarters: a producer faster than its sinks
        // then sends in bursts instead of waking for every record settled.
        ++waiters_;
        wakeAckThread(true);  // settled records of this producer may be what holds the room
        budgetCv_.wait(lock, [&] {
            return stopping_.load() || p->closed.load() ||
                   static_cast<size_t>(buffered_.load()) + bytes <= std::max(lowWater(), bytes);
        });
        --waiters_;
        if (reserve(&one, 1) == 0) {
            return MP_ECLOSED;
        }
    }
    lock.unlock();
    std::lock_guard<std::mutex> plock(p->mu);
    if (rec.seq <= p->lastSeq.load()) {
        release(static_cast<int64_t>(bytes));
        return MP_EINVAL;
    }
    out = build(p, rec, nTo);
    return MP_OK;
}

// The record carved from the producer's arena, filled and appended to its pending run.
// THREADING: p->mu held, its room reserved.
RecordBus::Rec* RecordBus::build(Producer* p, const mp_record& rec, size_t nTo) {
    RecPtr owned(Rec::make(p->arena, dataBytes(rec)));
    Rec* r = owned.get();
    r->bytes = heldBytes(rec);
    char* at = r->data;
    auto put = [&at](const void* from, size_t len) {
        if (len != 0) {
            std::memcpy(at, from, len);
            at += len;
        }
    };
    put(rec.stream.data, rec.stream.len);
    put(rec.key.data, rec.key.len);
    put(rec.id.data, rec.id.len);
    put(rec.content_type.data, rec.content_type.len);
    put(rec.payload.data, rec.payload.len);
    r->streamLen = static_cast<uint32_t>(rec.stream.len);
    r->keyLen = static_cast<uint32_t>(rec.key.len);
    r->idLen = static_cast<uint32_t>(rec.id.len);
    r->typeLen = static_cast<uint32_t>(rec.content_type.len);
    r->ts = rec.ts_ns;
    r->seq = rec.seq;
    r->producer = p;
    r->remaining.store(static_cast<int>(nTo), std::memory_order_relaxed);  // published under s->mu
    append(p, rec.seq, std::move(owned));
    return r;
}

namespace {
constexpr auto kLinger = std::chrono::microseconds(500);
}  // namespace

void RecordBus::sinkLoop(Sink* s) {
    // Records are offered a chunk at a time: their tokens are registered in one lock, and a
    // sink that says MP_EAGAIN has the rest of the chunk offered again after a pause.
    constexpr size_t kChunk = 256;
    auto backoff = std::chrono::milliseconds(1);
    std::deque<Rec*> work;
    while (true) {
        if (work.empty()) {
            std::unique_lock<std::mutex> lock(s->mu);
            s->cv.wait(lock, [&] { return !s->queue.empty() || !delivering_.load(); });
            if (!delivering_.load()) {
                break;
            }
            if (s->queue.size() < kChunk) {
                // Woken for a few records: a producer slower than this sink would otherwise
                // wake it for every record (a futex wake and two switches each, more than a
                // record costs). A moment's wait lets them gather; records wait at most that.
                lock.unlock();
                std::this_thread::sleep_for(kLinger);
                lock.lock();
            }
            work.swap(s->queue);
            s->inHand = work.size();
        }
        if (!delivering_.load()) {
            break;
        }
        const size_t n = std::min(work.size(), kChunk);
        uint64_t first = 0;
        outstanding_ += static_cast<int64_t>(n);
        {
            std::lock_guard<std::mutex> lock(s->tokenMu);
            first = s->base + s->tokens.size();
            s->tokens.insert(s->tokens.end(), work.begin(),
                             work.begin() + static_cast<std::ptrdiff_t>(n));
        }
        const uint64_t high = static_cast<uint64_t>(s->index + 1) << kTokenShift;
        size_t i = 0;
        mp_status st = MP_OK;
        for (; i < n; ++i) {
            const uint64_t token = high | (first + i);
            mp_record view = work[i]->view();
            st = s->port.deliver(view, token);
            if (st == MP_EAGAIN) {
                break;
            }
            if (st != MP_OK) {
                done(token, st);  // refused: given up (a token it did not keep)
            }
        }
        if (i < n) {  // not taken: their tokens are void, they are offered again
            std::lock_guard<std::mutex> lock(s->tokenMu);
            for (size_t j = i; j < n; ++j) {
                const uint64_t place = first + j;
                if (place >= s->base && place - s->base < s->tokens.size()) {
                    s->tokens[place - s->base] = nullptr;
                }
            }
            trimTokens(s);
            outstanding_ -= static_cast<int64_t>(n - i);
        }
        work.erase(work.begin(), work.begin() + static_cast<std::ptrdiff_t>(i));
        s->inHand = work.size();
        if (st == MP_EAGAIN) {
            retries_->value.fetch_add(1, std::memory_order_relaxed);
            std::unique_lock<std::mutex> lock(s->mu);
            s->cv.wait_for(lock, backoff, [&] { return !delivering_.load(); });
            backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
        } else {
            backoff = std::chrono::milliseconds(1);
        }
    }
    // Stopping: what this sink did not take is given up.
    std::deque<Rec*> left;
    {
        std::lock_guard<std::mutex> lock(s->mu);
        left.swap(s->queue);
    }
    left.insert(left.begin(), work.begin(), work.end());
    work.clear();
    s->inHand = 0;
    if (!left.empty()) {
        log(MP_LOG_WARN, "host",
            s->port.name + ": " + std::to_string(left.size()) +
                " records not delivered at stop (records_dropped_total)");
    }
    for (Rec* r : left) {
        dropped_->value.fetch_add(1, std::memory_order_relaxed);
        r->failed = true;
        if (--r->remaining == 0) {
            settle(r);
        }
    }
}

void RecordBus::done(uint64_t token, mp_status status) {
    const uint64_t index = token >> kTokenShift;
    if (index == 0 || index > sinks_.size()) {
        return;  // not a token of this bus
    }
    Sink* s = sinks_[index - 1].get();
    const uint64_t place = token & kTokenPlace;
    Rec* r = nullptr;
    {
        std::lock_guard<std::mutex> lock(s->tokenMu);
        if (place < s->base || place - s->base >= s->tokens.size()) {
            return;  // unknown or already done: exactly once per token
        }
        r = std::exchange(s->tokens[place - s->base], nullptr);
        if (r == nullptr) {
            return;
        }
        trimTokens(s);
    }
    --outstanding_;
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

// Every sink is done with `r`. Its producer's mark moves over it later, under the producer's
// lock (advance), when the producer emits next or the ack thread looks: that lock is then never
// fought over by the sinks' threads, record by record.
void RecordBus::settle(Rec* r) {
    r->settled.store(true, std::memory_order_release);  // r may be gone after this
    // A producer waiting for room: the room may be this record's, move the mark now.
    wakeAckThread(waiters_.load() != 0);
}

void RecordBus::wakeAckThread(bool now) {
    // The ack thread looks every 20 ms anyway; waking it for every record settled costs a
    // futex call per record: at most one wake-up per 5 ms, per 0.5 ms when a producer waits for
    // room.
    if (!now) {  // the clock is read once every 64 records settled by this thread
        thread_local unsigned settledHere = 0;
        if ((++settledHere & 63U) != 0) {
            return;
        }
    }
    const int64_t t = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
    int64_t last = lastAckWakeUs_.load(std::memory_order_relaxed);
    if (t - last >= (now ? 500 : 5000) &&
        lastAckWakeUs_.compare_exchange_strong(last, t, std::memory_order_relaxed)) {
        ackCv_.notify_one();
    }
}

void RecordBus::release(int64_t bytes) {
    if (bytes == 0) {
        return;
    }
    // Without the lock: a producer that waits has counted itself in waiters_ (under the lock)
    // before it tests the budget, so either it sees these bytes gone or it is woken.
    buffered_ -= bytes;
    bufferedGauge_->value.store(buffered_.load(), std::memory_order_relaxed);
    if (waiters_.load() != 0 && static_cast<size_t>(buffered_.load()) <= lowWater()) {
        { std::lock_guard<std::mutex> lock(budgetMu_); }
        budgetCv_.notify_all();
    }
}

// The producer's mark moves over every settled record in seq order, stopping for good at one
// that failed; the records it passed leave the budget (after a failure, settled records still
// leave it from the front, in order, the mark staying where it is).
void RecordBus::advance(Producer* p) {
    int64_t freed = 0;
    while (!p->pending.empty()) {
        const Producer::Entry& front = p->pending.front();
        if (front.rec && !front.rec->settled.load(std::memory_order_acquire)) {
            break;
        }
        if (!p->stuck && front.rec && front.rec->failed) {
            p->stuck = true;
            log(MP_LOG_WARN, "host",
                p->port.slot + ": its delivered mark stays at " + std::to_string(p->delivered) +
                    ": record " + std::to_string(front.seq) + " was not delivered");
        }
        if (!p->stuck) {
            p->delivered = front.seq;
        }
        freed += front.rec ? static_cast<int64_t>(front.rec->bytes) : 0;
        p->pending.pop_front();
    }
    release(freed);
}

// Record `seq` joins the producer's pending run, in seq order; `r` empty: a record no sink took
// (nothing to wait for: it extends an entry of such records, or moves the mark when nothing
// waits before it).
void RecordBus::append(Producer* p, uint64_t seq, RecPtr r) {
    p->lastSeq.store(seq, std::memory_order_relaxed);  // under mu (a plain store: no fence)
    if (!r && p->pending.empty()) {
        if (!p->stuck) {
            p->delivered = seq;
        }
    } else if (!r && !p->pending.back().rec) {
        p->pending.back().seq = seq;
    } else {
        p->pending.push_back(Producer::Entry{seq, std::move(r)});
    }
}

// Tokens done (or void) at the front of a sink's table leave it; the next one becomes its base.
void RecordBus::trimTokens(Sink* s) {
    while (!s->tokens.empty() && !s->tokens.front()) {
        s->tokens.pop_front();
        ++s->base;
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
                advance(p.get());
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
        for (auto& s : sinks_) {
            empty = empty && s->inHand.load() == 0;
        }
        empty = empty && outstanding_.load() == 0;
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
    for (auto& p : producers_) {  // what settled leaves the budget now, not at the ack thread's
        std::lock_guard<std::mutex> lock(p->mu);
        advance(p.get());
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
