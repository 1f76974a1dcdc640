// SPDX-License-Identifier: Apache-2.0
#include "stream/pipeline.hpp"

#include <cstring>
#include <semaphore>

#include "core/log.hpp"

namespace mp::host {

namespace {

constexpr uint32_t kRecSegment = 1;
constexpr uint32_t kRecTick = 2;
constexpr uint32_t kRecEnd = 3;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
}

// Holds a worker's semaphore for a scope.
struct Hold {
    explicit Hold(std::binary_semaphore& s) : s_(s) { s_.acquire(); }
    ~Hold() { s_.release(); }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

  private:
    std::binary_semaphore& s_;
};

struct RecordHeader {
    uint32_t type;
    uint32_t len;  // payload bytes following the header
    Segment seg;   // payload pointer not meaningful
};

}  // namespace

void CaptureStats::add(const CaptureStats& o) {
    frames += o.frames;
    bytes += o.bytes;
    tcp += o.tcp;
    unsupportedLink += o.unsupportedLink;
    notIp += o.notIp;
    notTcp += o.notTcp;
    fragments += o.fragments;
    truncatedHeaders += o.truncatedHeaders;
    malformed += o.malformed;
    queueDropped += o.queueDropped;
    queueDroppedBytes += o.queueDroppedBytes;
}

struct Pipeline::Producer {
    size_t slot = 0;
    std::vector<std::unique_ptr<SpscRing>> rings;  // one per worker
    uint64_t lastTick = 0;
    uint64_t lastTs = 0;
    uint64_t batchesSincePublish = 0;
    CaptureStats stats;      // owned by the capture thread
    CaptureStats published;  // what has been added to the shared counters
    CaptureStats shared;     // guarded by statsMutex_
};

struct Pipeline::Worker {
    std::unique_ptr<FlowTable> table;
    // Held while the worker handles records (a batch of them, or an inline read of frames), so
    // that withWorker() runs between them.
    // A semaphore, not a mutex: in the inline mode the capture thread takes it and the control
    // thread may give it back at stop() (a capture that stopped in the middle of a read).
    std::binary_semaphore busy{1};
    bool busyHeld = false;  // inline mode: the capture thread holds `busy` across a read
    // withWorker() is waiting for `busy`: the worker lets it in before taking `busy` again
    // (a semaphore is not fair; a busy worker would take it back at once).
    std::atomic<bool> wanted{false};

    void yieldIfWanted() {
        while (wanted.load(std::memory_order_acquire)) {
            wanted.wait(true, std::memory_order_acquire);
        }
    }
    void holdInline() {
        if (!busyHeld) {
            yieldIfWanted();
            busy.acquire();
            busyHeld = true;
        }
    }
    void releaseInline() {
        if (busyHeld) {
            busyHeld = false;
            busy.release();
        }
    }
    std::array<std::atomic<SpscRing*>, kMaxProducers> rings{};
    std::atomic<uint32_t> wakeSeq{0};
    std::atomic<bool> sleeping{false};
    std::thread thread;
    uint64_t lastTs = 0;
    FlowStats lastPublished;  // worker thread only
    FlowStats published;      // guarded by statsMutex_
};

namespace {
// Which producer slot the calling thread has, per pipeline.
// Keyed by a process-unique id, not the address: a new pipeline may reuse an old one's.
thread_local uint64_t tlPipeline = 0;
thread_local size_t tlSlot = 0;
std::atomic<uint64_t> gPipelineIds{0};
}  // namespace

Pipeline::Pipeline(PipelineOptions options, std::vector<StreamHandler*> handlers, Metrics* metrics)
    : options_(std::move(options)),
      counters_(metrics != nullptr ? std::make_unique<Counters>(*metrics) : nullptr),
      id_(++gPipelineIds) {
    if (options_.workers == 0) {
        options_.workers = 1;
    }
    inline_ = options_.inlineWorker && options_.workers == 1;
    for (size_t i = 0; i < options_.workers; ++i) {
        auto w = std::make_unique<Worker>();
        StreamHandler* h = handlers.at(i);
        w->table = std::make_unique<FlowTable>(options_.limits, options_.serverPorts, *h, i + 1,
                                               options_.workers);
        workers_.push_back(std::move(w));
    }
}

Pipeline::~Pipeline() { stop(); }

void Pipeline::start() {
    if (started_) {
        return;
    }
    started_ = true;
    stopping_ = false;
    if (inline_) {
        return;  // the capture thread does the work
    }
    for (size_t i = 0; i < workers_.size(); ++i) {
        workers_[i]->thread = std::thread([this, i] { runWorker(i); });
    }
}

void Pipeline::stop() {
    if (!started_) {
        return;
    }
    stopping_ = true;
    if (inline_) {
        // Captures have stopped (they are stopped before the pipeline): nothing runs here now.
        Worker& w = *workers_[0];
        w.holdInline();
        w.table->closeAll(MP_CLOSE_SHUTDOWN, w.lastTs);
        publishWorker(w);
        w.releaseInline();
        started_ = false;
        endCv_.notify_all();
        return;
    }
    for (size_t i = 0; i < workers_.size(); ++i) {
        wake(i);
    }
    for (auto& w : workers_) {
        w->thread.join();
    }
    started_ = false;
}

Pipeline::Producer& Pipeline::producer() {
    if (tlPipeline == id_) {
        return *producers_[tlSlot];
    }
    std::lock_guard<std::mutex> lock(producerMutex_);
    size_t slot = producerCount_.load();
    if (slot >= kMaxProducers) {
        throw std::runtime_error("more than 16 capture threads");
    }
    if (inline_ && slot > 0) {
        throw std::runtime_error("an inline pipeline takes one capture thread");
    }
    auto p = std::make_unique<Producer>();
    p->slot = slot;
    for (size_t i = 0; i < workers_.size() && !inline_; ++i) {
        p->rings.push_back(std::make_unique<SpscRing>(options_.ringBytes));
        workers_[i]->rings[slot].store(p->rings[i].get(), std::memory_order_release);
    }
    producers_[slot] = std::move(p);
    producerCount_.store(slot + 1);
    tlPipeline = id_;
    tlSlot = slot;
    return *producers_[slot];
}

void Pipeline::wake(size_t worker) {
    Worker& w = *workers_[worker];
    w.wakeSeq.fetch_add(1, std::memory_order_seq_cst);
    w.wakeSeq.notify_one();
}

void Pipeline::wakeStalled() {
    if (inline_ || !started_.load()) {
        return;
    }
    const size_t nprod = producerCount_.load(std::memory_order_acquire);
    for (size_t i = 0; i < workers_.size(); ++i) {
        Worker& w = *workers_[i];
        if (!w.sleeping.load(std::memory_order_seq_cst)) {
            continue;
        }
        for (size_t slot = 0; slot < nprod; ++slot) {
            const SpscRing* ring = w.rings[slot].load(std::memory_order_acquire);
            if (ring != nullptr && !ring->empty()) {
                wake(i);
                break;
            }
        }
    }
}

void Pipeline::push(Producer& p, size_t worker, uint32_t type, const Segment* s,
                    const uint8_t* data, size_t len, bool wait) {
    if (inline_) {
        Segment seg = s != nullptr ? *s : Segment{};
        seg.payload = data;
        handle(*workers_[worker], type, seg);
        return;
    }
    SpscRing& ring = *p.rings[worker];
    size_t n = sizeof(RecordHeader) + len;
    uint8_t* dst = ring.reserve(n);
    if (dst == nullptr) {
        if (type == kRecSegment && !wait) {
            ++p.stats.queueDropped;
            p.stats.queueDroppedBytes += len;
            return;
        }
        // Control records, and offline input that asked to wait, must arrive: wait for room
        // (the worker is draining).
        for (int spins = 0; (dst = ring.reserve(n)) == nullptr; ++spins) {
            if (workers_[worker]->sleeping.load(std::memory_order_seq_cst)) {
                wake(worker);
            }
            if (spins < 256) {
                cpuRelax();
            } else {
                // The worker is the bottleneck (offline input): sleep rather than burn a core.
                std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        }
    }
    RecordHeader h{};
    h.type = type;
    h.len = static_cast<uint32_t>(len);
    if (s != nullptr) {
        h.seg = *s;
        h.seg.payload = nullptr;
    }
    std::memcpy(dst, &h, sizeof h);
    if (len != 0) {
        std::memcpy(dst + sizeof h, data, len);
    }
    ring.commit(n);
}

mp_status Pipeline::onFrames(const mp_frame* frames, size_t count) {
    Producer& p = producer();
    uint64_t droppedBefore = p.stats.queueDropped;
    const size_t nw = workers_.size();
    const bool more = count > 0 && (frames[count - 1].flags & MP_FRAME_MORE) != 0;
    if (inline_) {
        // The capture thread is the worker: it holds the worker across a read (MP_FRAME_MORE
        // frames up to the call that ends it), one acquisition per read rather than per frame.
        workers_[0]->holdInline();
    }
    struct EndOfRead {
        Pipeline& pl;
        bool more;
        ~EndOfRead() {
            if (pl.inline_ && !more) {
                pl.workers_[0]->releaseInline();
            }
        }
    } endOfRead{*this, more};
    for (size_t i = 0; i < count; ++i) {
        const mp_frame& f = frames[i];
        ++p.stats.frames;
        p.stats.bytes += f.data.len;
        Segment s;
        ParseResult r = parseFrame(f.link_type, f.data.data, f.data.len, s);
        switch (r) {
            case ParseResult::Ok:
                break;
            case ParseResult::UnsupportedLink:
                ++p.stats.unsupportedLink;
                continue;
            case ParseResult::NotIp:
                ++p.stats.notIp;
                continue;
            case ParseResult::NotTcp:
                ++p.stats.notTcp;
                continue;
            case ParseResult::Fragment:
                ++p.stats.fragments;
                continue;
            case ParseResult::Truncated:
                ++p.stats.truncatedHeaders;
                continue;
            case ParseResult::Malformed:
                ++p.stats.malformed;
                continue;
        }
        if (s.captured < s.length && f.orig_len <= f.data.len) {
            // The IP length claims bytes the frame never had: it was not cut by the snapshot
            // length (that is truncation, a gap of the missing bytes), it lies. No receiver
            // accepts such a packet; neither does the probe.
            ++p.stats.malformed;
            continue;
        }
        ++p.stats.tcp;
        s.ts = f.ts_ns;
        // Stream time ticks go to every worker at the same place in the packet sequence,
        // whatever the number of workers: results do not depend on it.
        if (f.ts_ns >= p.lastTick + options_.tickIntervalNs) {
            if (p.lastTick != 0) {
                Segment t;
                t.ts = f.ts_ns;
                for (size_t w = 0; w < nw; ++w) {
                    push(p, w, kRecTick, &t, nullptr, 0);
                }
                publishCapture(p);
            }
            p.lastTick = f.ts_ns;
        }
        p.lastTs = f.ts_ns;
        size_t w = nw == 1 ? 0 : static_cast<size_t>(flowHash(s) % nw);
        push(p, w, kRecSegment, &s, s.payload, s.captured, (f.flags & MP_FRAME_WAIT) != 0);
    }
    // The capture says more frames of this read follow at once (it hands them over one by
    // one): the per-call work below waits for the call that ends the read.
    if (more) {
        return p.stats.queueDropped != droppedBefore ? MP_EAGAIN : MP_OK;
    }
    // A short batch means the capture is not saturated: keep the counters current (live
    // traffic that pauses would otherwise show stale figures until the next tick).
    if (count < 32 || ++p.batchesSincePublish >= 64) {
        publishCapture(p);
        if (inline_) {
            publishWorker(*workers_[0]);  // there is no idle worker thread to do it
        }
        p.batchesSincePublish = 0;
    }
    // Waking a sleeping worker costs a syscall: a capture that is keeping up (full batches)
    // wakes it only once its ring is a quarter full; a short batch means the capture has
    // nothing more right now, so the worker is woken at once (live latency).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const bool urgent = count < kFullBatch;
    for (size_t w = 0; w < nw && !inline_; ++w) {
        if (workers_[w]->sleeping.load(std::memory_order_seq_cst) &&
            (urgent || p.rings[w]->used() > p.rings[w]->capacity() / 4)) {
            wake(w);
        }
    }
    return p.stats.queueDropped != droppedBefore ? MP_EAGAIN : MP_OK;
}

void Pipeline::endOfInput() {
    Producer& p = producer();
    uint64_t target = 0;
    {
        std::lock_guard<std::mutex> lock(endMutex_);
        target = endAcks_ + workers_.size();
    }
    Segment t;
    t.ts = p.lastTs;
    if (inline_) {
        Worker& w = *workers_[0];
        w.holdInline();
        push(p, 0, kRecEnd, &t, nullptr, 0);
        w.releaseInline();  // the end of input ends any read
    } else {
        for (size_t w = 0; w < workers_.size(); ++w) {
            push(p, w, kRecEnd, &t, nullptr, 0);
            wake(w);
        }
    }
    publishCapture(p);
    std::unique_lock<std::mutex> lock(endMutex_);
    endCv_.wait(lock, [&] { return endAcks_ >= target || !started_; });
}

// Counter handles, looked up once: publishing is a handful of atomic adds.
struct Pipeline::Counters {
    struct Entry {
        mp_counter* c;
        uint64_t CaptureStats::*capture;
        uint64_t FlowStats::*flow;
        uint64_t ReassemblyStats::*reassembly;
        int closeReason;
    };
    std::vector<Entry> entries;

    explicit Counters(Metrics& m) {
        auto cap = [&](const char* name, const char* help, uint64_t CaptureStats::*f) {
            entries.push_back({m.get("stream", name, help, MP_COUNTER), f, nullptr, nullptr, -1});
        };
        auto flow = [&](const char* name, const char* help, uint64_t FlowStats::*f) {
            entries.push_back({m.get("stream", name, help, MP_COUNTER), nullptr, f, nullptr, -1});
        };
        auto re = [&](const char* name, const char* help, uint64_t ReassemblyStats::*f) {
            entries.push_back({m.get("stream", name, help, MP_COUNTER), nullptr, nullptr, f, -1});
        };
        auto closed = [&](const char* name, const char* help, int reason) {
            entries.push_back(
                {m.get("stream", name, help, MP_COUNTER), nullptr, nullptr, nullptr, reason});
        };
        cap("frames_total", "frames received from capture plugins", &CaptureStats::frames);
        cap("frame_bytes_total", "bytes of frames received", &CaptureStats::bytes);
        cap("tcp_segments_total", "TCP segments parsed", &CaptureStats::tcp);
        cap("unsupported_link_total", "frames of a link type the host does not parse",
            &CaptureStats::unsupportedLink);
        cap("not_ip_total", "frames that are not IPv4/IPv6", &CaptureStats::notIp);
        cap("not_tcp_total", "IP packets that are not TCP", &CaptureStats::notTcp);
        cap("ip_fragments_total", "IP fragments (counted and dropped, not reassembled)",
            &CaptureStats::fragments);
        cap("truncated_headers_total", "frames whose headers were cut by the snapshot length",
            &CaptureStats::truncatedHeaders);
        cap("malformed_total",
            "frames with impossible IP/TCP lengths (an IP length past the end of a whole frame)",
            &CaptureStats::malformed);
        cap("queue_dropped_total", "TCP segments dropped because a worker queue was full",
            &CaptureStats::queueDropped);
        cap("queue_dropped_bytes_total", "payload bytes of those segments",
            &CaptureStats::queueDroppedBytes);
        flow("connections_opened_total", "TCP connections opened", &FlowStats::opened);
        flow("connections_midstream_total", "connections first seen without their SYN",
             &FlowStats::midstream);
        closed("connections_closed_fin_total", "connections closed by FIN", MP_CLOSE_FIN);
        closed("connections_closed_rst_total", "connections closed by RST", MP_CLOSE_RST);
        closed("connections_closed_idle_total", "connections closed after the idle timeout",
               MP_CLOSE_IDLE);
        closed("connections_evicted_total", "connections evicted by the table bound or port reuse",
               MP_CLOSE_EVICTED);
        closed("connections_closed_shutdown_total",
               "connections closed at end of input or shutdown", MP_CLOSE_SHUTDOWN);
        flow("not_server_port_total", "segments with no server port on either side",
             &FlowStats::notServerPort);
        flow("ignored_segments_total", "segments of unknown connections that cannot start one",
             &FlowStats::ignored);
        re("delivered_bytes_total", "bytes delivered in order to decoders",
           &ReassemblyStats::deliveredBytes);
        re("out_of_order_segments_total", "segments that arrived ahead of a hole",
           &ReassemblyStats::outOfOrder);
        re("retransmitted_bytes_total", "bytes seen more than once",
           &ReassemblyStats::retransmittedBytes);
        re("overlap_conflict_bytes_total", "overlapping bytes that differed (first copy kept)",
           &ReassemblyStats::conflictBytes);
        re("gaps_total", "gap events delivered to decoders", &ReassemblyStats::gaps);
        re("gap_bytes_total", "bytes given up as missing", &ReassemblyStats::gapBytes);
        re("buffer_limit_gaps_total", "gaps forced by the per-direction buffer bound",
           &ReassemblyStats::bufferLimitGaps);
        re("worker_buffer_limit_gaps_total", "gaps forced by the per-worker buffer bound",
           &ReassemblyStats::workerLimitGaps);
        re("truncated_bytes_total", "payload bytes cut by the snapshot length",
           &ReassemblyStats::truncatedBytes);
    }

    static void bump(mp_counter* c, uint64_t now, uint64_t before) {
        if (now != before) {
            c->value.fetch_add(static_cast<int64_t>(now - before), std::memory_order_relaxed);
        }
    }
    void capture(const CaptureStats& now, const CaptureStats& before) const {
        for (const auto& e : entries) {
            if (e.capture != nullptr) {
                bump(e.c, now.*e.capture, before.*e.capture);
            }
        }
    }
    void flow(const FlowStats& now, const FlowStats& before) const {
        for (const auto& e : entries) {
            if (e.flow != nullptr) {
                bump(e.c, now.*e.flow, before.*e.flow);
            } else if (e.reassembly != nullptr) {
                bump(e.c, now.reassembly.*e.reassembly, before.reassembly.*e.reassembly);
            } else if (e.closeReason >= 0) {
                auto r = static_cast<size_t>(e.closeReason);
                bump(e.c, now.closed[r], before.closed[r]);
            }
        }
    }
};

void Pipeline::publishCapture(Producer& p) {
    if (counters_) {
        counters_->capture(p.stats, p.published);
    }
    p.published = p.stats;
    std::lock_guard<std::mutex> lock(statsMutex_);
    p.shared = p.stats;
}

void Pipeline::publishWorker(Worker& w) {
    if (counters_) {
        counters_->flow(w.table->stats(), w.lastPublished);
    }
    w.lastPublished = w.table->stats();
    std::lock_guard<std::mutex> lock(statsMutex_);
    w.published = w.lastPublished;
}

void Pipeline::handle(Worker& w, uint32_t type, const Segment& s) {
    if (type == kRecSegment) {
        w.lastTs = s.ts;
        w.table->onSegment(s);
    } else if (type == kRecTick) {
        w.lastTs = s.ts;
        w.table->tick(s.ts);
        publishWorker(w);
    } else if (type == kRecEnd) {
        uint64_t ts = s.ts > w.lastTs ? s.ts : w.lastTs;
        w.table->closeAll(MP_CLOSE_SHUTDOWN, ts);
        w.table->tick(ts);
        publishWorker(w);
        {
            std::lock_guard<std::mutex> lock(endMutex_);
            ++endAcks_;
        }
        endCv_.notify_all();
    }
}

void Pipeline::runWorker(size_t index) {
    Worker& w = *workers_[index];
    size_t idle = 0;
    bool dirty = false;  // processed something since the last publication
    while (true) {
        bool any = false;
        size_t nprod = producerCount_.load(std::memory_order_acquire);
        for (size_t slot = 0; slot < nprod; ++slot) {
            SpscRing* ring = w.rings[slot].load(std::memory_order_acquire);
            if (ring == nullptr) {
                continue;
            }
            // A bounded batch per ring, so several capture threads are served fairly; the
            // report thread's withWorker() runs between batches.
            w.yieldIfWanted();
            Hold hold(w.busy);
            for (int batch = 0; batch < 256; ++batch) {
                const uint8_t* rec = ring->peek();
                if (rec == nullptr) {
                    break;
                }
                any = true;
                RecordHeader h;
                std::memcpy(&h, rec, sizeof h);
                dirty = true;
                h.seg.payload = rec + sizeof h;
                handle(w, h.type, h.seg);
                ring->release(sizeof h + h.len);
            }
        }
        if (any) {
            idle = 0;
            continue;
        }
        if (stopping_.load()) {
            break;
        }
        if (++idle < 64) {
            // A very short busy wait; then sleep until a producer wakes this worker.
            cpuRelax();
            continue;
        }
        if (dirty) {
            // Live traffic paused: make the counters current before sleeping.
            publishWorker(w);
            dirty = false;
        }
        uint32_t seq = w.wakeSeq.load(std::memory_order_seq_cst);
        w.sleeping.store(true, std::memory_order_seq_cst);
        bool empty = true;
        nprod = producerCount_.load(std::memory_order_acquire);
        for (size_t slot = 0; slot < nprod && empty; ++slot) {
            SpscRing* ring = w.rings[slot].load(std::memory_order_acquire);
            empty = ring == nullptr || ring->empty();
        }
        if (empty && !stopping_.load()) {
            w.wakeSeq.wait(seq, std::memory_order_seq_cst);
        }
        w.sleeping.store(false, std::memory_order_seq_cst);
    }
    {
        Hold hold(w.busy);
        w.table->closeAll(MP_CLOSE_SHUTDOWN, w.lastTs);
        publishWorker(w);
    }
    endCv_.notify_all();
}

bool Pipeline::withWorker(size_t index, std::chrono::milliseconds wait,
                          const std::function<void()>& fn) {
    Worker& w = *workers_.at(index);
    w.wanted.store(true, std::memory_order_release);
    struct Done {
        Worker& w;
        bool held = false;
        ~Done() {
            if (held) {
                w.busy.release();
            }
            w.wanted.store(false, std::memory_order_release);
            w.wanted.notify_all();
        }
    } done{w};
    done.held = w.busy.try_acquire_for(wait);
    if (!done.held) {
        return false;
    }
    fn();
    return true;
}

FlowStats Pipeline::flowStats() const {
    std::lock_guard<std::mutex> lock(statsMutex_);
    FlowStats total;
    for (const auto& w : workers_) {
        total.add(w->published);
    }
    return total;
}

CaptureStats Pipeline::captureStats() const {
    std::lock_guard<std::mutex> lock(statsMutex_);
    CaptureStats total;
    for (size_t i = 0; i < producerCount_.load(); ++i) {
        total.add(producers_[i]->shared);
    }
    return total;
}

}  // namespace mp::host
