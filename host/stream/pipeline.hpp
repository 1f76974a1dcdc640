// SPDX-License-Identifier: Apache-2.0
// Capture threads -> (parse, hash) -> bounded lock-free rings -> N workers, each with its own
// flow table and stream handler (a decoder instance). The capture side never blocks.
#pragma once

#include <mp/abi.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/metrics.hpp"
#include "stream/flow_table.hpp"
#include "stream/ring.hpp"

namespace mp::host {

struct PipelineOptions {
    size_t workers = 1;
    size_t ringBytes = 4 << 20;  // per (capture thread, worker) pair
    FlowLimits limits;
    std::vector<uint16_t> serverPorts{3306};
    uint64_t tickIntervalNs = 100000000;  // stream-time ticks: idle checks, decoder on_tick
    /// One worker, one capture thread (a file or a single device): the capture thread runs the
    /// worker's work itself; no ring, no copy, no hand-off. Results are the same as with a ring.
    bool inlineWorker = false;
};

/// Frame-level counters of one capture thread.
struct CaptureStats {
    uint64_t frames = 0;
    uint64_t bytes = 0;
    uint64_t tcp = 0;
    uint64_t unsupportedLink = 0;
    uint64_t notIp = 0;
    uint64_t notTcp = 0;
    uint64_t fragments = 0;
    uint64_t truncatedHeaders = 0;
    uint64_t malformed = 0;
    uint64_t queueDropped = 0;  // segments dropped because a worker's ring was full
    uint64_t queueDroppedBytes = 0;

    void add(const CaptureStats& o);
};

class Pipeline {
  public:
    static constexpr size_t kMaxProducers = 16;
    /// Batches of this many frames or more mean "more is coming" (see onFrames).
    static constexpr size_t kFullBatch = 64;

    /// One handler per worker; handlers outlive the pipeline.
    Pipeline(PipelineOptions options, std::vector<StreamHandler*> handlers, Metrics* metrics);
    ~Pipeline();
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;

    void start();
    /// Drains the rings, closes every connection (MP_CLOSE_SHUTDOWN) and joins the workers.
    void stop();

    /// Capture threads: parse, route and queue frames. Never blocks; MP_EAGAIN when some
    /// segment was dropped because a ring was full (counted).
    mp_status onFrames(const mp_frame* frames, size_t count);
    /// The calling capture thread reached the end of its input: every worker closes its
    /// connections and ticks with the last stream time; returns when all have done so.
    void endOfInput();

    /// Wakes every sleeping worker that has records queued. A capture wakes the workers itself
    /// after a short batch; after a full one it does not (more is coming), so a capture that
    /// goes quiet right after a full batch would leave it queued until its next frame. The
    /// host calls this from a timer (any thread), which bounds that wait.
    void wakeStalled();

    /// Runs fn while worker `index` is between records: never while its stream handler runs.
    /// Before start() and after stop() the worker is idle and fn runs at once. False (fn not
    /// run) when the worker stays busy past `wait` (a capture that never ends a read of
    /// MP_FRAME_MORE frames, in the inline mode).
    bool withWorker(size_t index, std::chrono::milliseconds wait, const std::function<void()>& fn);

    /// Sums of all workers and capture threads, as of their last publication.
    FlowStats flowStats() const;
    CaptureStats captureStats() const;
    size_t workers() const { return workers_.size(); }

  private:
    struct Producer;
    struct Worker;
    struct Counters;
    Producer& producer();
    void push(Producer& p, size_t worker, uint32_t type, const Segment* s, const uint8_t* data,
              size_t len, bool wait = true);
    void wake(size_t worker);
    void runWorker(size_t index);
    /// One record of the worker's stream (segment, tick or end); worker's thread only.
    void handle(Worker& w, uint32_t type, const Segment& s);
    void publishWorker(Worker& w);
    void publishCapture(Producer& p);

    PipelineOptions options_;
    std::unique_ptr<Counters> counters_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::array<std::unique_ptr<Producer>, kMaxProducers> producers_;
    std::atomic<size_t> producerCount_{0};
    std::mutex producerMutex_;
    uint64_t id_;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> started_{false};
    bool inline_ = false;
    mutable std::mutex statsMutex_;
    std::mutex endMutex_;
    std::condition_variable endCv_;
    uint64_t endAcks_ = 0;
};

}  // namespace mp::host
