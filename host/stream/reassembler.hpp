// SPDX-License-Identifier: Apache-2.0
// TCP reassembly of one direction: in-order delivery, out-of-order buffering (bounded),
// retransmissions and overlaps (first copy wins, conflicts counted), sequence wrap-around,
// and explicit gaps for bytes that are known to be missing.
// The buffer is bounded by the memory it really takes: each buffered chunk costs its bytes
// plus its container node and allocations (chunkCost), so a flood of one-byte segments or of
// segments without bytes reaches the bound as fast as their memory grows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <vector>

namespace mp::host {

/// Where a direction's ordered bytes go.
class StreamEvents {
  public:
    virtual ~StreamEvents() = default;
    virtual void onData(const uint8_t* data, size_t len, uint64_t ts) = 0;
    virtual void onGap(uint64_t len, uint64_t ts) = 0;
};

/// Counters of one direction (plain integers: one thread owns them).
struct ReassemblyStats {
    uint64_t segments = 0;            // segments with payload
    uint64_t deliveredBytes = 0;      // bytes handed over in order
    uint64_t outOfOrder = 0;          // segments that arrived ahead of a hole
    uint64_t retransmittedBytes = 0;  // bytes seen again (whole or partial copies)
    uint64_t conflictBytes = 0;       // overlapping bytes that differed from the first copy
    uint64_t gaps = 0;                // gap events
    uint64_t gapBytes = 0;            // bytes given up as missing
    uint64_t bufferLimitGaps = 0;     // gaps forced because the buffer bound was reached
    uint64_t workerLimitGaps = 0;     // gaps forced because the worker's bound was reached
    uint64_t ackGaps = 0;             // gaps declared because the peer acknowledged unseen bytes
    uint64_t truncatedBytes = 0;      // bytes cut by the snapshot length (delivered as gaps)

    void add(const ReassemblyStats& o);
};

/// Memory held by the buffers of several reassemblers (one worker's), kept by them, and its
/// bound: a reassembler whose segment takes the sum over it gives up its own holes until it is
/// under again (it can: the sum was under before that segment).
struct BufferBudget {
    size_t held = 0;
    size_t limit = std::numeric_limits<size_t>::max();
};

class Reassembler {
  public:
    /// `maxBuffered`: bound of this direction's held memory; `shared`: also counted there,
    /// and bounded by its limit.
    explicit Reassembler(size_t maxBuffered, BufferBudget* shared = nullptr)
        : maxBuffered_(maxBuffered), shared_(shared) {}

    /// Memory one buffered chunk of `stored` bytes takes: the map node and the bytes'
    /// allocation, each as the allocator rounds it (8 bytes of header, 16-byte granules, 32 at
    /// least: glibc's malloc on 64-bit). A chunk without bytes (cut by the snapshot length)
    /// costs its node.
    static size_t chunkCost(size_t stored);

    bool started() const { return started_; }
    /// The next expected sequence number (after a SYN: its seq + 1; mid-stream: the first seq).
    void start(uint32_t isn);
    uint32_t isn() const { return isn_; }

    /// A segment: `captured` bytes of data at `seq`, `length` bytes on the wire.
    void add(uint32_t seq, const uint8_t* data, uint32_t captured, uint32_t length, uint64_t ts,
             StreamEvents& out, ReassemblyStats& st);
    /// The peer acknowledged up to `ack`: a hole before buffered data that the peer already
    /// received will never be seen; deliver it as a gap now.
    void acked(uint32_t ack, uint64_t ts, StreamEvents& out, ReassemblyStats& st);
    /// A FIN at `seq` (the sequence number after the segment's payload).
    void fin(uint32_t seq);
    /// FIN seen and everything before it delivered.
    bool finished() const { return finOff_.has_value() && next_ >= *finOff_; }
    /// Delivers everything buffered, with gaps for the holes (connection end).
    void flush(uint64_t ts, StreamEvents& out, ReassemblyStats& st);

    /// Memory held by the buffered chunks (the sum of their chunkCost), <= maxBuffered.
    size_t held() const { return held_; }
    /// The same, counted again chunk by chunk (tests and the fuzzer check the two agree).
    size_t recount() const;
    /// Payload bytes buffered.
    size_t stored() const { return stored_; }
    uint64_t delivered() const { return next_; }

  private:
    struct Chunk {
        uint64_t len = 0;
        bool missing = false;  // bytes known to exist but not captured
        std::vector<uint8_t> bytes;
    };

    int64_t offsetOf(uint32_t seq) const;
    void deliverGap(uint64_t len, uint64_t ts, StreamEvents& out, ReassemblyStats& st);
    void insert(uint64_t off, const uint8_t* data, uint64_t len, bool missing, ReassemblyStats& st);
    void drain(uint64_t ts, StreamEvents& out, ReassemblyStats& st);
    void giveUpOldestHole(uint64_t ts, StreamEvents& out, ReassemblyStats& st);
    void hold(const Chunk& c);
    void release(const Chunk& c);

    size_t maxBuffered_;
    BufferBudget* shared_;
    bool started_ = false;
    uint32_t isn_ = 0;
    uint64_t next_ = 0;  // stream offset of the next byte to deliver
    std::map<uint64_t, Chunk> pending_;
    size_t held_ = 0;
    size_t stored_ = 0;
    std::optional<uint64_t> finOff_;
};

}  // namespace mp::host
