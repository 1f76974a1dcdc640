// SPDX-License-Identifier: Apache-2.0
#include "stream/flow_table.hpp"

#include <algorithm>
#include <cstring>

namespace mp::host {

void FlowStats::add(const FlowStats& o) {
    segments += o.segments;
    notServerPort += o.notServerPort;
    ignored += o.ignored;
    opened += o.opened;
    midstream += o.midstream;
    for (size_t i = 0; i < closed.size(); ++i) {
        closed[i] += o.closed[i];
    }
    portReused += o.portReused;
    reassembly.add(o.reassembly);
}

namespace {

inline uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

uint64_t endpointHash(const uint8_t* ip, uint16_t port) {
    uint64_t a = 0;
    uint64_t b = 0;
    std::memcpy(&a, ip, 8);
    std::memcpy(&b, ip + 8, 8);
    uint64_t h = mix(mix(0x51ed270b27a1b3c9ULL, a), b);
    h = mix(h, port);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

}  // namespace

size_t FlowKeyHash::operator()(const FlowKey& k) const {
    return static_cast<size_t>(endpointHash(k.client.data(), k.clientPort) * 31 +
                               endpointHash(k.server.data(), k.serverPort));
}

uint64_t flowHash(const Segment& s) {
    // Commutative in the two endpoints, so both directions land on one worker.
    return endpointHash(s.srcIp, s.srcPort) + endpointHash(s.dstIp, s.dstPort);
}

struct FlowTable::Conn {
    FlowKey key;
    uint64_t id = 0;
    void* stream = nullptr;
    uint64_t lastTs = 0;
    std::array<Reassembler, 2> dir;
    Lru::iterator lruPos;
    Conn(size_t maxBuffered, BufferBudget* budget)
        : dir{Reassembler(maxBuffered, budget), Reassembler(maxBuffered, budget)} {}
};

// Adapts one direction's ordered output to the handler.
class DirectionOut : public StreamEvents {
  public:
    DirectionOut(StreamHandler& h, void* stream, uint32_t dir) : h_(h), s_(stream), d_(dir) {}
    void onData(const uint8_t* data, size_t len, uint64_t ts) override {
        h_.data(s_, d_, data, len, ts);
    }
    void onGap(uint64_t len, uint64_t ts) override { h_.gap(s_, d_, len, ts); }

  private:
    StreamHandler& h_;
    void* s_;
    uint32_t d_;
};

FlowTable::FlowTable(FlowLimits limits, std::vector<uint16_t> serverPorts, StreamHandler& handler,
                     uint64_t firstId, uint64_t idStride)
    : limits_(limits),
      ports_(std::move(serverPorts)),
      handler_(handler),
      budget_{0, limits.maxBufferedPerWorker},
      nextId_(firstId),
      idStride_(idStride == 0 ? 1 : idStride) {
    for (uint16_t p : ports_) {
        portBits_[p >> 6] |= 1ULL << (p & 63);
    }
}

FlowTable::~FlowTable() = default;

bool FlowTable::isServerPort(uint16_t p) const { return (portBits_[p >> 6] >> (p & 63)) & 1; }

void FlowTable::onSegment(const Segment& s) {
    ++stats_.segments;
    uint32_t dir = 0;
    FlowKey key;
    key.version = s.ipVersion;
    if (isServerPort(s.dstPort)) {
        dir = MP_DIR_TO_SERVER;
        key.clientPort = s.srcPort;
        key.serverPort = s.dstPort;
        std::memcpy(key.client.data(), s.srcIp, 16);
        std::memcpy(key.server.data(), s.dstIp, 16);
    } else if (isServerPort(s.srcPort)) {
        dir = MP_DIR_TO_CLIENT;
        key.clientPort = s.dstPort;
        key.serverPort = s.srcPort;
        std::memcpy(key.client.data(), s.dstIp, 16);
        std::memcpy(key.server.data(), s.srcIp, 16);
    } else {
        ++stats_.notServerPort;
        return;
    }
    const bool syn = (s.flags & kTcpSyn) != 0;
    const bool rst = (s.flags & kTcpRst) != 0;
    const bool fin = (s.flags & kTcpFin) != 0;
    const bool ack = (s.flags & kTcpAck) != 0;
    const bool clientSyn = syn && !ack && dir == MP_DIR_TO_SERVER;

    // Consecutive segments usually belong to the same connection: skip the hash lookup.
    auto it = (last_ != nullptr && last_->key == key) ? lastIt_ : conns_.find(key);
    if (it != conns_.end() && clientSyn && it->second->dir[0].started() &&
        it->second->dir[0].isn() != s.seq + 1) {
        // The client reuses the port for a new connection we never saw end.
        ++stats_.portReused;
        close(it->second.get(), MP_CLOSE_EVICTED, s.ts);
        it = conns_.end();
    }
    Conn* c = nullptr;
    if (it == conns_.end()) {
        if (rst || (s.length == 0 && !syn)) {
            ++stats_.ignored;
            return;
        }
        if (conns_.size() >= limits_.maxConnections && !lru_.empty()) {
            close(lru_.front(), MP_CLOSE_EVICTED, s.ts);
        }
        auto owned = std::make_unique<Conn>(limits_.maxBufferedPerDirection, &budget_);
        c = owned.get();
        c->key = key;
        c->id = nextId_;
        nextId_ += idStride_;
        mp_flow flow{};
        flow.struct_size = sizeof flow;
        flow.flags = clientSyn ? 0 : MP_FLOW_MIDSTREAM;
        flow.id = c->id;
        flow.ip_version = key.version;
        flow.client_port = key.clientPort;
        flow.server_port = key.serverPort;
        std::memcpy(flow.client_ip, key.client.data(), 16);
        std::memcpy(flow.server_ip, key.server.data(), 16);
        flow.ts_ns = s.ts;
        ++stats_.opened;
        if (!clientSyn) {
            ++stats_.midstream;
        }
        c->stream = handler_.open(flow);
        c->lruPos = lru_.insert(lru_.end(), c);
        it = conns_.emplace(key, std::move(owned)).first;
    } else {
        c = it->second.get();
        if (c->lruPos != std::prev(lru_.end())) {
            lru_.splice(lru_.end(), lru_, c->lruPos);
        }
    }
    last_ = c;
    lastIt_ = it;
    c->lastTs = s.ts;
    Reassembler& r = c->dir[dir];
    if (syn && !r.started()) {
        r.start(s.seq + 1);
    }
    if (s.length > 0) {
        DirectionOut out(handler_, c->stream, dir);
        r.add(s.seq + (syn ? 1 : 0), s.payload, s.captured, s.length, s.ts, out, stats_.reassembly);
    } else if (!r.started() && !rst) {
        r.start(s.seq + (syn ? 1 : 0));
    }
    if (ack) {
        Reassembler& other = c->dir[1 - dir];
        DirectionOut out(handler_, c->stream, 1 - dir);
        other.acked(s.ack, s.ts, out, stats_.reassembly);
    }
    if (rst) {
        close(c, MP_CLOSE_RST, s.ts);
        return;
    }
    if (fin) {
        r.fin(s.seq + (syn ? 1 : 0) + s.length);
    }
    if (c->dir[0].finished() && c->dir[1].finished()) {
        close(c, MP_CLOSE_FIN, s.ts);
    }
}

void FlowTable::close(Conn* c, uint32_t reason, uint64_t ts) {
    for (uint32_t d = 0; d < 2; ++d) {
        DirectionOut out(handler_, c->stream, d);
        c->dir[d].flush(ts, out, stats_.reassembly);
    }
    handler_.close(c->stream, reason, ts);
    if (reason < stats_.closed.size()) {
        ++stats_.closed[reason];
    }
    lru_.erase(c->lruPos);
    if (last_ == c) {
        last_ = nullptr;
    }
    FlowKey key = c->key;
    conns_.erase(key);  // frees c
}

size_t FlowTable::recountHeld() const {
    size_t n = 0;
    for (const auto& [key, c] : conns_) {
        n += c->dir[0].recount() + c->dir[1].recount();
    }
    return n;
}

size_t FlowTable::maxHeldPerDirection() const {
    size_t n = 0;
    for (const auto& [key, c] : conns_) {
        n = std::max({n, c->dir[0].held(), c->dir[1].held()});
    }
    return n;
}

void FlowTable::tick(uint64_t ts) {
    while (!lru_.empty() && lru_.front()->lastTs + limits_.idleTimeoutNs < ts) {
        close(lru_.front(), MP_CLOSE_IDLE, ts);
    }
    handler_.tick(ts);
}

void FlowTable::closeAll(uint32_t reason, uint64_t ts) {
    while (!lru_.empty()) {
        close(lru_.front(), reason, ts);
    }
}

}  // namespace mp::host
