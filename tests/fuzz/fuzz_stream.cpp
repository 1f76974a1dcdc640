// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the flow table and TCP reassembly, driven by a sequence of fuzzed segments
// (ports, flags, sequence and ack numbers, payloads), with tight bounds so eviction, buffer
// limits, gaps and wrap-around are all reached. Checks that every byte is accounted for, and
// that the memory held out of order is exactly the sum of what is stored, within both bounds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>

#include "stream/flow_table.hpp"

namespace {

struct Check : mp::host::StreamHandler {
    std::set<void*> open_;
    int next = 1;
    void* open(const mp_flow&) override {
        void* s = reinterpret_cast<void*>(static_cast<uintptr_t>(next++));
        open_.insert(s);
        return s;
    }
    void data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t) override {
        if (open_.count(s) == 0 || dir > 1 || (n > 0 && p == nullptr)) {
            __builtin_trap();
        }
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < n; ++i) {
            sink = sink ^ p[i];  // touch every byte: ASan sees a bad pointer
        }
    }
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t) override {
        if (open_.count(s) == 0 || dir > 1 || len == 0) {
            __builtin_trap();
        }
    }
    void close(void* s, uint32_t, uint64_t) override {
        if (open_.erase(s) != 1) {
            __builtin_trap();
        }
    }
    void tick(uint64_t) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Check h;
    mp::host::FlowLimits lim;
    lim.maxConnections = 4;
    lim.maxBufferedPerDirection = 1024;
    lim.maxBufferedPerWorker = 2048;
    lim.idleTimeoutNs = 50;
    {
        mp::host::FlowTable t(lim, {3306}, h, 1, 1);
        size_t pos = 0;
        uint64_t ts = 0;
        // Each segment: 12 header bytes, then up to 63 payload bytes.
        while (pos + 12 <= size) {
            const uint8_t* r = data + pos;
            mp::host::Segment s;
            s.ipVersion = 4;
            s.srcIp[3] = r[0] & 3;
            s.dstIp[3] = 9;
            bool toServer = (r[1] & 1) != 0;
            uint16_t client = static_cast<uint16_t>(40000 + (r[1] >> 1));
            s.srcPort = toServer ? client : 3306;
            s.dstPort = toServer ? 3306 : client;
            std::memcpy(&s.seq, r + 2, 4);
            std::memcpy(&s.ack, r + 6, 4);
            s.flags = r[10];
            size_t len = r[11] & 63;
            pos += 12;
            if (pos + len > size) {
                len = size - pos;
            }
            s.payload = data + pos;
            s.length = static_cast<uint32_t>(len);
            s.captured = (r[11] & 64) != 0 ? static_cast<uint32_t>(len / 2) : s.length;
            pos += len;
            ts += r[0] >> 2;
            s.ts = ts;
            t.onSegment(s);
            if ((r[11] & 128) != 0) {
                t.tick(ts);
            }
            if (t.held() != t.recountHeld() || t.held() > lim.maxBufferedPerWorker ||
                t.maxHeldPerDirection() > lim.maxBufferedPerDirection) {
                __builtin_trap();
            }
        }
        t.closeAll(MP_CLOSE_SHUTDOWN, ts);
        if (t.size() != 0 || t.held() != 0) {
            __builtin_trap();
        }
    }
    if (!h.open_.empty()) {
        __builtin_trap();  // a stream opened and never closed
    }
    return 0;
}
