// SPDX-License-Identifier: Apache-2.0
// The connections of one worker: direction from the server port(s), two reassemblers each,
// open/data/gap/close towards a stream handler (the decoder), bounded and counted.
#pragma once

#include <mp/abi.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "stream/packet.hpp"
#include "stream/reassembler.hpp"

namespace mp::host {

/// What the flow table drives: a decoder instance (or a test recorder).
class StreamHandler {
  public:
    virtual ~StreamHandler() = default;
    virtual void* open(const mp_flow& flow) = 0;
    virtual void data(void* stream, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) = 0;
    virtual void gap(void* stream, uint32_t dir, uint64_t len, uint64_t ts) = 0;
    virtual void close(void* stream, uint32_t reason, uint64_t ts) = 0;
    virtual void tick(uint64_t ts) = 0;
};

struct FlowLimits {
    size_t maxConnections = 65536;             // per worker
    size_t maxBufferedPerDirection = 4 << 20;  // memory held out of order (chunkCost)
    size_t maxBufferedPerWorker = 64 << 20;    // the same, all connections of a worker
    uint64_t idleTimeoutNs = 300ULL * 1000000000ULL;
};

/// Counters of one worker's flow table.
struct FlowStats {
    uint64_t segments = 0;       // TCP segments handled
    uint64_t notServerPort = 0;  // neither port is a server port
    uint64_t ignored = 0;        // no connection and nothing to start one (pure ACK, FIN, RST)
    uint64_t opened = 0;
    uint64_t midstream = 0;            // opened without seeing the client's SYN
    std::array<uint64_t, 6> closed{};  // by MP_CLOSE_* reason
    uint64_t portReused = 0;           // a new SYN on a connection still open
    ReassemblyStats reassembly;

    void add(const FlowStats& o);
};

struct FlowKey {
    uint8_t version = 0;
    uint16_t clientPort = 0;
    uint16_t serverPort = 0;
    std::array<uint8_t, 16> client{};
    std::array<uint8_t, 16> server{};
    // By words: the defaulted comparison called memcmp twice per segment.
    bool operator==(const FlowKey& o) const {
        return version == o.version && clientPort == o.clientPort && serverPort == o.serverPort &&
               same16(client, o.client) && same16(server, o.server);
    }
    static bool same16(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b) {
        uint64_t x[2];
        uint64_t y[2];
        std::memcpy(x, a.data(), 16);
        std::memcpy(y, b.data(), 16);
        return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
    }
};

struct FlowKeyHash {
    size_t operator()(const FlowKey& k) const;
};

/// A direction-independent hash of a segment's connection: both directions map to one worker.
uint64_t flowHash(const Segment& s);

class FlowTable {
  public:
    FlowTable(FlowLimits limits, std::vector<uint16_t> serverPorts, StreamHandler& handler,
              uint64_t firstId, uint64_t idStride);
    ~FlowTable();
    FlowTable(const FlowTable&) = delete;
    FlowTable& operator=(const FlowTable&) = delete;

    void onSegment(const Segment& s);
    /// Stream time advanced: idle connections are closed, the handler ticks.
    void tick(uint64_t ts);
    /// Closes every connection (end of input, shutdown), delivering what is buffered.
    void closeAll(uint32_t reason, uint64_t ts);

    const FlowStats& stats() const { return stats_; }
    size_t size() const { return conns_.size(); }
    /// Memory held out of order by all connections (<= limits.maxBufferedPerWorker).
    size_t held() const { return budget_.held; }
    /// The same, counted again from every buffered chunk (tests, fuzzer).
    size_t recountHeld() const;
    /// The largest memory held by one direction (<= limits.maxBufferedPerDirection).
    size_t maxHeldPerDirection() const;

  private:
    struct Conn;
    using Lru = std::list<Conn*>;
    void close(Conn* c, uint32_t reason, uint64_t ts);
    bool isServerPort(uint16_t p) const;

    FlowLimits limits_;
    std::vector<uint16_t> ports_;
    std::array<uint64_t, 1024> portBits_{};  // 65536-bit set of server ports
    StreamHandler& handler_;
    BufferBudget budget_;  // before conns_: the reassemblers count into it
    uint64_t nextId_;
    uint64_t idStride_;
    using Map = std::unordered_map<FlowKey, std::unique_ptr<Conn>, FlowKeyHash>;
    Map conns_;
    Conn* last_ = nullptr;  // the connection of the previous segment
    Map::iterator lastIt_;
    Lru lru_;  // least recently active first
    FlowStats stats_;
};

}  // namespace mp::host
