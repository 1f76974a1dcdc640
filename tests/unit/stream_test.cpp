// SPDX-License-Identifier: Apache-2.0
// The host's stream layer: frame parsing, reassembly edge cases with crafted segments, the flow
// table's bounds, and every bundled capture replayed with 1 and 4 workers.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <malloc.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "stream/flow_table.hpp"
#include "stream/packet.hpp"
#include "stream/pipeline.hpp"
#include "stream/reassembler.hpp"
#include "support/process.hpp"

using namespace mp::host;

namespace {

// Records what a direction delivers: bytes as text, gaps as "<gap N>".
struct Recorder : StreamEvents {
    std::string text;
    uint64_t gapBytes = 0;
    void onData(const uint8_t* d, size_t n, uint64_t) override {
        text.append(reinterpret_cast<const char*>(d), n);
    }
    void onGap(uint64_t n, uint64_t) override {
        text += "<gap " + std::to_string(n) + ">";
        gapBytes += n;
    }
};

const uint8_t* bytes(const char* s) { return reinterpret_cast<const uint8_t*>(s); }

void add(Reassembler& r, uint32_t seq, const char* s, Recorder& out, ReassemblyStats& st) {
    auto n = static_cast<uint32_t>(std::strlen(s));
    r.add(seq, bytes(s), n, n, 0, out, st);
}

// ---- frame builders -------------------------------------------------------------------------

void put16(std::vector<uint8_t>& v, size_t at, uint16_t x) {
    v[at] = static_cast<uint8_t>(x >> 8);
    v[at + 1] = static_cast<uint8_t>(x);
}
void put32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
    put16(v, at, static_cast<uint16_t>(x >> 16));
    put16(v, at + 2, static_cast<uint16_t>(x));
}

std::vector<uint8_t> tcp(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                         const std::string& payload) {
    std::vector<uint8_t> t(20 + payload.size());
    put16(t, 0, sport);
    put16(t, 2, dport);
    put32(t, 4, seq);
    put32(t, 8, ack);
    t[12] = 5 << 4;
    t[13] = flags;
    std::memcpy(t.data() + 20, payload.data(), payload.size());
    return t;
}

std::vector<uint8_t> ipv4(const std::vector<uint8_t>& l4, uint8_t proto = 6, uint16_t frag = 0,
                          uint32_t src = 0x7f000001, uint32_t dst = 0x7f000002) {
    std::vector<uint8_t> ip(20);
    ip[0] = 0x45;
    put16(ip, 2, static_cast<uint16_t>(20 + l4.size()));
    put16(ip, 6, frag);
    ip[8] = 64;
    ip[9] = proto;
    put32(ip, 12, src);
    put32(ip, 16, dst);
    ip.insert(ip.end(), l4.begin(), l4.end());
    return ip;
}

std::vector<uint8_t> ipv6(const std::vector<uint8_t>& l4, bool withHopByHop) {
    std::vector<uint8_t> ip(40);
    ip[0] = 0x60;
    size_t ext = withHopByHop ? 8 : 0;
    put16(ip, 4, static_cast<uint16_t>(l4.size() + ext));
    ip[6] = withHopByHop ? 0 : 6;
    ip[7] = 64;
    ip[23] = 1;  // ::1
    ip[39] = 1;
    if (withHopByHop) {
        std::vector<uint8_t> hbh(8);
        hbh[0] = 6;  // next: TCP
        ip.insert(ip.end(), hbh.begin(), hbh.end());
    }
    ip.insert(ip.end(), l4.begin(), l4.end());
    return ip;
}

std::vector<uint8_t> ether(const std::vector<uint8_t>& l3, uint16_t type, int vlanTags = 0) {
    std::vector<uint8_t> f(12);
    for (int i = 0; i < vlanTags; ++i) {
        std::vector<uint8_t> tag(4);
        put16(tag, 0, i == 0 && vlanTags > 1 ? 0x88A8 : 0x8100);
        put16(tag, 2, 100);
        f.insert(f.end(), tag.begin(), tag.end());
    }
    std::vector<uint8_t> et(2);
    put16(et, 0, type);
    f.insert(f.end(), et.begin(), et.end());
    f.insert(f.end(), l3.begin(), l3.end());
    return f;
}

// ---- a stream handler that digests every connection ----------------------------------------

struct ConnDigest {
    std::string key;
    uint64_t hash[2] = {1469598103934665603ULL, 1469598103934665603ULL};
    uint64_t bytes[2] = {0, 0};
    uint64_t gaps[2] = {0, 0};
    uint32_t closeReason = 0;
    uint32_t flags = 0;
};

std::string endpoint(const uint8_t* ip, int version, uint16_t port) {
    char buf[64];
    inet_ntop(version == 4 ? AF_INET : AF_INET6, ip, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port);
}

struct DigestHandler : StreamHandler {
    std::vector<std::unique_ptr<ConnDigest>> done;
    std::map<std::string, int> seen;  // key -> occurrences (a 4-tuple may be reused)
    uint64_t ticks = 0;
    void* open(const mp_flow& f) override {
        auto* d = new ConnDigest;
        d->key = endpoint(f.client_ip, f.ip_version, f.client_port) + ">" +
                 endpoint(f.server_ip, f.ip_version, f.server_port);
        d->key += "#" + std::to_string(seen[d->key]++);
        d->flags = f.flags;
        return d;
    }
    void data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t) override {
        auto* d = static_cast<ConnDigest*>(s);
        for (size_t i = 0; i < n; ++i) {
            d->hash[dir] = (d->hash[dir] ^ p[i]) * 1099511628211ULL;
        }
        d->bytes[dir] += n;
    }
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t) override {
        auto* d = static_cast<ConnDigest*>(s);
        d->gaps[dir] += len;
        d->hash[dir] = (d->hash[dir] ^ (0x100 + len)) * 1099511628211ULL;
    }
    void close(void* s, uint32_t reason, uint64_t) override {
        auto* d = static_cast<ConnDigest*>(s);
        d->closeReason = reason;
        done.emplace_back(d);
    }
    void tick(uint64_t) override { ++ticks; }
};

struct Replay {
    std::map<std::string, std::string> conns;  // key -> digest summary
    FlowStats flow;
    CaptureStats capture;
    uint64_t frames = 0;
    std::string error;
};

Replay replay(const std::string& file, const std::vector<uint16_t>& ports, size_t workers) {
    Replay out;
    char err[PCAP_ERRBUF_SIZE] = {0};
    pcap_t* p =
        pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    if (p == nullptr) {
        out.error = err;
        return out;
    }
    std::vector<DigestHandler> handlers(workers);
    std::vector<StreamHandler*> hp;
    for (auto& h : handlers) {
        hp.push_back(&h);
    }
    PipelineOptions po;
    po.workers = workers;
    po.serverPorts = ports;
    po.ringBytes = 1 << 20;
    Pipeline pipe(po, hp, nullptr);
    pipe.start();
    auto link = static_cast<uint32_t>(pcap_datalink(p));
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    std::vector<std::vector<uint8_t>> store;
    std::vector<mp_frame> batch;
    auto flush = [&] {
        if (!batch.empty()) {
            // A full ring would drop: this test wants every segment, so retry.
            pipe.onFrames(batch.data(), batch.size());
            batch.clear();
            store.clear();
        }
    };
    while (pcap_next_ex(p, &hdr, &data) == 1) {
        store.emplace_back(data, data + hdr->caplen);
        mp_frame f{};
        f.ts_ns = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ULL +
                  static_cast<uint64_t>(hdr->ts.tv_usec);
        f.link_type = link;
        f.orig_len = hdr->len;
        f.data = mp_bytes{store.back().data(), store.back().size()};
        batch.push_back(f);
        ++out.frames;
        if (batch.size() == 32) {
            flush();
        }
    }
    flush();
    pcap_close(p);
    pipe.endOfInput();
    pipe.stop();
    out.flow = pipe.flowStats();
    out.capture = pipe.captureStats();
    for (auto& h : handlers) {
        for (auto& d : h.done) {
            std::ostringstream s;
            s << std::hex << d->hash[0] << "/" << d->hash[1] << std::dec << " bytes " << d->bytes[0]
              << "/" << d->bytes[1] << " gaps " << d->gaps[0] << "/" << d->gaps[1] << " close "
              << d->closeReason << " flags " << d->flags;
            out.conns[d->key] = s.str();
        }
    }
    return out;
}

std::vector<uint16_t> parsePorts(const std::string& s) {
    std::vector<uint16_t> ports;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (!item.empty() && item != "-") {
            ports.push_back(static_cast<uint16_t>(std::stoi(item)));
        }
    }
    if (ports.empty()) {
        ports.push_back(3306);
    }
    return ports;
}

// Every capture to replay: (path, ports). Our own, the permissive third-party ones copied into
// tests/data, and the GPL/LGPL ones only from ../shared when it is there.
std::vector<std::pair<std::string, std::vector<uint16_t>>> captures(
    std::vector<std::string>& skipped) {
    std::vector<std::pair<std::string, std::vector<uint16_t>>> out;
    std::string data = mptest::sourceDir() + "/tests/data";
    for (const auto& e : std::filesystem::directory_iterator(data + "/pcap")) {
        if (e.path().extension() == ".pcap") {
            out.emplace_back(e.path().string(), std::vector<uint16_t>{3306});
        }
    }
    std::ifstream tsv(data + "/third-party/TSHARK-COUNTS.tsv");
    std::string line;
    std::getline(tsv, line);
    std::string shared = mptest::sourceDir() + "/../shared/corpus/third-party";
    while (std::getline(tsv, line)) {
        std::vector<std::string> cols;
        std::stringstream ss(line);
        std::string c;
        while (std::getline(ss, c, '\t')) {
            cols.push_back(c);
        }
        if (cols.size() < 12) {
            continue;
        }
        std::string local = data + "/third-party/" + cols[0] + "/" + cols[1];
        std::string remote = shared + "/" + cols[0] + "/" + cols[1];
        if (std::filesystem::exists(local)) {
            out.emplace_back(local, parsePorts(cols[11]));
        } else if (std::filesystem::exists(remote)) {
            out.emplace_back(remote, parsePorts(cols[11]));
        } else {
            skipped.push_back(cols[0] + "/" + cols[1]);
        }
    }
    return out;
}

}  // namespace

TEST_SUITE("stream") {
    TEST_CASE("reassembly: in order, out of order, retransmission, overlap conflicts") {
        Reassembler r(1 << 20);
        Recorder out;
        ReassemblyStats st;
        r.start(1000);
        add(r, 1000, "hello ", out, st);
        add(r, 1012, "world", out, st);  // ahead of a hole: buffered
        CHECK(out.text == "hello ");
        CHECK(st.outOfOrder == 1);
        add(r, 1000, "hello ", out, st);  // retransmission of delivered bytes
        CHECK(st.retransmittedBytes == 6);
        add(r, 1012, "WORLD", out, st);  // overlaps the buffered copy: the first one wins
        CHECK(st.conflictBytes == 5);
        add(r, 1006, "there ", out, st);  // fills the hole: everything flows
        CHECK(out.text == "hello there world");
        CHECK(r.held() == 0);
        CHECK(st.gaps == 0);
        add(r, 1016, "d!", out, st);  // partial overlap with delivered bytes: only the new byte
        CHECK(out.text == "hello there world!");
    }

    TEST_CASE("reassembly: sequence numbers wrap around 2^32") {
        Reassembler r(1 << 20);
        Recorder out;
        ReassemblyStats st;
        r.start(0xfffffffcU);
        add(r, 0xfffffffcU, "abcd", out, st);
        add(r, 4, "ijkl", out, st);  // after the wrap, ahead of a hole
        add(r, 0, "efgh", out, st);
        CHECK(out.text == "abcdefghijkl");
        CHECK(st.gaps == 0);
    }

    TEST_CASE("reassembly: the buffer bound forces a counted gap") {
        Reassembler r(8);
        Recorder out;
        ReassemblyStats st;
        r.start(0);
        add(r, 0, "ab", out, st);
        add(r, 10, "0123456789", out, st);  // 8 bytes missing, 10 buffered > 8
        CHECK(out.text == "ab<gap 8>0123456789");
        CHECK(st.bufferLimitGaps == 1);
        CHECK(st.gapBytes == 8);
    }

    TEST_CASE("reassembly: an ACK past a hole declares it lost at once") {
        Reassembler r(1 << 20);
        Recorder out;
        ReassemblyStats st;
        r.start(0);
        add(r, 0, "ab", out, st);
        add(r, 5, "fg", out, st);
        r.acked(3, 0, out, st);  // the peer has bytes up to 3 only: nothing is known lost yet
        CHECK(out.text == "ab<gap 1>");
        r.acked(7, 0, out, st);  // acknowledged past the hole: bytes 3..5 will never be seen
        CHECK(out.text == "ab<gap 1><gap 2>fg");
        CHECK(st.ackGaps == 2);
    }

    TEST_CASE("reassembly: truncated segments deliver what was captured, then a gap") {
        Reassembler r(1 << 20);
        Recorder out;
        ReassemblyStats st;
        r.start(0);
        r.add(0, bytes("abcdef"), 3, 6, 0, out, st);
        add(r, 6, "gh", out, st);
        CHECK(out.text == "abc<gap 3>gh");
        CHECK(st.truncatedBytes == 3);
        // Out of order and truncated: the missing part is kept as a hole of known length.
        Reassembler r2(1 << 20);
        Recorder out2;
        r2.start(0);
        r2.add(4, bytes("efgh"), 2, 4, 0, out2, st);
        add(r2, 0, "abcd", out2, st);
        CHECK(out2.text == "abcdef<gap 2>");
    }

    TEST_CASE("reassembly: FIN after all data, flush delivers holes as gaps") {
        Reassembler r(1 << 20);
        Recorder out;
        ReassemblyStats st;
        r.start(0);
        add(r, 0, "ab", out, st);
        r.fin(2);
        CHECK(r.finished());
        Reassembler r2(1 << 20);
        Recorder out2;
        r2.start(0);
        add(r2, 4, "ef", out2, st);
        r2.fin(6);
        CHECK_FALSE(r2.finished());
        r2.flush(0, out2, st);
        CHECK(out2.text == "<gap 4>ef");
        CHECK(r2.finished());
    }

    TEST_CASE("reassembly: memory held is what is stored, never above the bound") {
        // One-byte segments, each ahead of a one-byte hole: the cheapest flood in payload
        // bytes and the dearest in memory.
        const size_t bound = 64 * 1024;
        Reassembler r(bound);
        Recorder out;
        ReassemblyStats st;
        r.start(0);
        add(r, 0, "a", out, st);
        const uint32_t n = 5000;
        size_t peak = 0;
        for (uint32_t i = 0; i < n; ++i) {
            add(r, 2 + 2 * i, "b", out, st);
            REQUIRE(r.held() == r.recount());
            REQUIRE(r.held() <= bound);
            peak = std::max(peak, r.held());
        }
        // Each chunk costs its node and its allocation: the bound holds far fewer than
        // `bound` one-byte chunks, and is reached.
        CHECK(r.held() == r.stored() * Reassembler::chunkCost(1));
        CHECK(r.stored() == bound / Reassembler::chunkCost(1));
        CHECK(peak > bound - Reassembler::chunkCost(1));
        CHECK(st.bufferLimitGaps == n - bound / Reassembler::chunkCost(1));
        r.flush(0, out, st);
        CHECK(r.held() == 0);
        CHECK(r.stored() == 0);
        // Every hole was given up as a one-byte gap, every byte delivered once.
        CHECK(st.gaps == n);
        CHECK(st.gapBytes == n);
        CHECK(out.gapBytes == n);
        CHECK(st.deliveredBytes == 1 + n);
        CHECK(r.delivered() == 1 + 2 * uint64_t{n});
    }

    TEST_CASE("reassembly: chunks without captured bytes are held too") {
        // Cut by the snapshot length and out of order: no byte stored, still a node.
        Reassembler r(4096);
        Recorder out;
        ReassemblyStats st;
        r.start(0);
        size_t i = 0;
        for (; i < 1000; ++i) {
            r.add(static_cast<uint32_t>(10 + 2000 * i), bytes("x"), 0, 1000, 0, out, st);
            REQUIRE(r.held() == r.recount());
            REQUIRE(r.held() <= 4096);
        }
        CHECK(r.stored() == 0);
        CHECK(r.held() == (4096 / Reassembler::chunkCost(0)) * Reassembler::chunkCost(0));
        CHECK(st.truncatedBytes == 1000 * 1000);
        r.flush(0, out, st);
        // Nothing silent: 1000 holes of 10 or 1000 bytes, and 1000 truncated ranges.
        CHECK(st.gapBytes == 10 + 999 * 1000 + 1000 * 1000);
        CHECK(out.gapBytes == st.gapBytes);
        CHECK(st.deliveredBytes == 0);
    }

// glibc's malloc only: the sanitizers bring their own allocators (mallinfo2 sees none of it).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MP_TEST_SANITIZER_ALLOCATOR 1
#endif
#endif
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && \
    !defined(MP_TEST_SANITIZER_ALLOCATOR) && defined(__GLIBC__)
    TEST_CASE("reassembly: chunkCost is what the allocator really takes") {
        // The heap in use grows by what held() says, within a few percent, for one-byte
        // chunks (mostly overhead) and for larger ones (mostly payload).
        for (size_t size : {1, 40, 1000}) {
            CAPTURE(size);
            std::string payload(size, 'p');
            const size_t before = mallinfo2().uordblks;
            auto r = std::make_unique<Reassembler>(size_t{1} << 30);
            Recorder out;
            ReassemblyStats st;
            r->start(0);
            for (uint32_t i = 0; i < 20000; ++i) {
                auto seq = static_cast<uint32_t>(1 + i * (size + 1));
                r->add(seq, bytes(payload.c_str()), static_cast<uint32_t>(size),
                       static_cast<uint32_t>(size), 0, out, st);
            }
            const auto grown = static_cast<double>(mallinfo2().uordblks - before);
            const auto held = static_cast<double>(r->held());
            CHECK(held == doctest::Approx(grown).epsilon(0.05));
        }
    }
#endif

    TEST_CASE("flow table: the worker's bound holds across connections, gaps counted") {
        DigestHandler h;
        FlowLimits lim;
        lim.maxBufferedPerDirection = 64 * 1024;
        lim.maxBufferedPerWorker = 256 * 1024;
        FlowTable t(lim, {3306}, h, 1, 1);
        const uint16_t conns = 16;  // 16 x 64 KiB would be 1 MiB
        const uint32_t perConn = 2000;
        auto feed = [&](uint16_t sport, uint32_t seq, const std::string& payload) {
            auto frame = ipv4(tcp(sport, 3306, seq, 1, kTcpAck, payload));
            Segment s;
            REQUIRE(parseFrame(101, frame.data(), frame.size(), s) == ParseResult::Ok);
            s.ts = 1;
            t.onSegment(s);
        };
        for (uint16_t c = 0; c < conns; ++c) {
            feed(static_cast<uint16_t>(7000 + c), 1000, "a");
        }
        for (uint32_t i = 0; i < perConn; ++i) {
            for (uint16_t c = 0; c < conns; ++c) {
                feed(static_cast<uint16_t>(7000 + c), 1002 + 2 * i, "b");
                REQUIRE(t.held() == t.recountHeld());
                REQUIRE(t.held() <= lim.maxBufferedPerWorker);
                REQUIRE(t.maxHeldPerDirection() <= lim.maxBufferedPerDirection);
            }
        }
        CHECK(t.held() > lim.maxBufferedPerWorker - Reassembler::chunkCost(1));
        const auto& st = t.stats().reassembly;
        CHECK(st.workerLimitGaps > 0);
        t.closeAll(MP_CLOSE_SHUTDOWN, 2);
        CHECK(t.held() == 0);
        // Every one-byte hole became a one-byte gap; every byte was delivered.
        CHECK(t.stats().reassembly.gaps == uint64_t{conns} * perConn);
        CHECK(t.stats().reassembly.gapBytes == uint64_t{conns} * perConn);
        CHECK(t.stats().reassembly.deliveredBytes == uint64_t{conns} * (perConn + 1));
        REQUIRE(h.done.size() == conns);
    }

    TEST_CASE("pipeline: an IP length past a whole frame is malformed, past a cut one a gap") {
        struct Counting : StreamHandler {
            uint64_t bytes = 0;
            uint64_t gapBytes = 0;
            void* open(const mp_flow&) override { return this; }
            void data(void*, uint32_t, const uint8_t*, size_t n, uint64_t) override { bytes += n; }
            void gap(void*, uint32_t, uint64_t n, uint64_t) override { gapBytes += n; }
            void close(void*, uint32_t, uint64_t) override {}
            void tick(uint64_t) override {}
        } h;
        PipelineOptions po;
        po.inlineWorker = true;
        Pipeline pipe(po, {&h}, nullptr);
        pipe.start();
        auto frame = ipv4(tcp(5000, 3306, 100, 1, kTcpAck, "0123456789"));
        put16(frame, 2, static_cast<uint16_t>(frame.size() + 90));  // claims 100 payload bytes
        mp_frame f{};
        f.ts_ns = 1;
        f.link_type = 101;
        f.orig_len = static_cast<uint32_t>(frame.size());  // the whole frame: a lie
        f.data = mp_bytes{frame.data(), frame.size()};
        pipe.onFrames(&f, 1);
        CHECK(pipe.captureStats().malformed == 1);
        CHECK(pipe.captureStats().tcp == 0);
        f.orig_len = static_cast<uint32_t>(frame.size() + 90);  // cut by the snapshot length
        pipe.onFrames(&f, 1);
        pipe.endOfInput();
        CHECK(pipe.captureStats().malformed == 1);
        CHECK(pipe.captureStats().tcp == 1);
        CHECK(h.bytes == 10);
        CHECK(h.gapBytes == 90);
        CHECK(pipe.flowStats().reassembly.truncatedBytes == 90);
        pipe.stop();
    }

    TEST_CASE("frames: every supported link type, VLAN tags and IPv6 extension headers") {
        auto seg = tcp(40000, 3306, 7, 9, kTcpAck, "SELECT 1");
        Segment s;
        auto v4 = ipv4(seg);
        auto eth = ether(v4, 0x0800);  // kept alive: s.payload points into it
        CHECK(parseFrame(1, eth.data(), eth.size(), s) == ParseResult::Ok);
        CHECK(std::string(reinterpret_cast<const char*>(s.payload), s.captured) == "SELECT 1");
        CHECK(s.srcPort == 40000);
        CHECK(s.dstPort == 3306);
        CHECK(s.seq == 7);
        for (int tags : {1, 2, 3}) {
            auto f = ether(v4, 0x0800, tags);
            CHECK(parseFrame(1, f.data(), f.size(), s) == ParseResult::Ok);
            CHECK(s.captured == 8);
        }
        std::vector<uint8_t> sll(16, 0);
        put16(sll, 14, 0x0800);
        sll.insert(sll.end(), v4.begin(), v4.end());
        CHECK(parseFrame(113, sll.data(), sll.size(), s) == ParseResult::Ok);
        std::vector<uint8_t> sll2(20, 0);
        put16(sll2, 0, 0x0800);
        sll2.insert(sll2.end(), v4.begin(), v4.end());
        CHECK(parseFrame(276, sll2.data(), sll2.size(), s) == ParseResult::Ok);
        std::vector<uint8_t> null = {2, 0, 0, 0};  // AF_INET, little-endian host
        null.insert(null.end(), v4.begin(), v4.end());
        CHECK(parseFrame(0, null.data(), null.size(), s) == ParseResult::Ok);
        CHECK(parseFrame(101, v4.data(), v4.size(), s) == ParseResult::Ok);
        for (bool hbh : {false, true}) {
            auto v6 = ipv6(seg, hbh);
            auto f = ether(v6, 0x86DD);
            CHECK(parseFrame(1, f.data(), f.size(), s) == ParseResult::Ok);
            CHECK(s.ipVersion == 6);
            CHECK(s.captured == 8);
            CHECK(s.dstIp[15] == 1);
        }
    }

    TEST_CASE(
        "frames: padding, fragments, truncation and garbage are classified, never read past") {
        auto v4 = ipv4(tcp(1, 3306, 0, 0, kTcpAck, ""));
        auto f = ether(v4, 0x0800);
        f.resize(60, 0xee);  // Ethernet minimum frame: the padding is not payload
        Segment s;
        CHECK(parseFrame(1, f.data(), f.size(), s) == ParseResult::Ok);
        CHECK(s.captured == 0);
        CHECK(s.length == 0);
        auto frag = ipv4(tcp(1, 3306, 0, 0, 0, "x"), 6, 0x2000);
        CHECK(parseFrame(101, frag.data(), frag.size(), s) == ParseResult::Fragment);
        auto udp = ipv4(std::vector<uint8_t>(8), 17);
        CHECK(parseFrame(101, udp.data(), udp.size(), s) == ParseResult::NotTcp);
        auto arp = ether(std::vector<uint8_t>(28), 0x0806);
        CHECK(parseFrame(1, arp.data(), arp.size(), s) == ParseResult::NotIp);
        auto whole = ether(ipv4(tcp(1, 3306, 0, 0, 0, "abcdef")), 0x0800);
        CHECK(parseFrame(1, whole.data(), 14 + 20 + 10, s) == ParseResult::Truncated);
        CHECK(parseFrame(1, whole.data(), whole.size() - 3, s) == ParseResult::Ok);
        CHECK(s.captured == 3);
        CHECK(s.length == 6);
        auto bad = ipv4(tcp(1, 3306, 0, 0, 0, ""));
        bad[0] = 0x43;  // IHL 3
        CHECK(parseFrame(101, bad.data(), bad.size(), s) == ParseResult::Malformed);
        CHECK(parseFrame(147, bad.data(), bad.size(), s) == ParseResult::UnsupportedLink);
        // Every prefix of a valid frame parses to something, without reading past it.
        for (size_t n = 0; n < whole.size(); ++n) {
            std::vector<uint8_t> cut(whole.begin(), whole.begin() + static_cast<long>(n));
            (void)parseFrame(1, cut.data(), cut.size(), s);
        }
    }

    TEST_CASE("flow table: handshake, direction, FIN and RST, mid-stream, bounds") {
        DigestHandler h;
        FlowLimits lim;
        lim.maxConnections = 2;
        lim.idleTimeoutNs = 1000;
        FlowTable t(lim, {3306}, h, 1, 1);
        auto feed = [&](uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
                        const std::string& payload, uint64_t ts) {
            auto frame = ipv4(tcp(sport, dport, seq, ack, flags, payload), 6, 0,
                              sport == 3306 ? 0x7f000002 : 0x7f000001,
                              sport == 3306 ? 0x7f000001 : 0x7f000002);
            Segment s;
            REQUIRE(parseFrame(101, frame.data(), frame.size(), s) == ParseResult::Ok);
            s.ts = ts;
            t.onSegment(s);
        };
        // A full connection: handshake, request, response, FIN both ways.
        feed(5000, 3306, 100, 0, kTcpSyn, "", 1);
        feed(3306, 5000, 900, 101, kTcpSyn | kTcpAck, "", 2);
        feed(5000, 3306, 101, 901, kTcpAck, "Q", 3);
        feed(3306, 5000, 901, 102, kTcpAck, "RR", 4);
        feed(5000, 3306, 102, 903, kTcpAck | kTcpFin, "", 5);
        feed(3306, 5000, 903, 103, kTcpAck | kTcpFin, "", 6);
        REQUIRE(h.done.size() == 1);
        CHECK(h.done[0]->bytes[MP_DIR_TO_SERVER] == 1);
        CHECK(h.done[0]->bytes[MP_DIR_TO_CLIENT] == 2);
        CHECK(h.done[0]->closeReason == MP_CLOSE_FIN);
        CHECK(h.done[0]->flags == 0);
        // Seen mid-stream, then reset.
        feed(5001, 3306, 5000, 77, kTcpAck, "late", 7);
        feed(3306, 5001, 77, 5004, kTcpAck | kTcpRst, "", 8);
        REQUIRE(h.done.size() == 2);
        CHECK(h.done[1]->flags == MP_FLOW_MIDSTREAM);
        CHECK(h.done[1]->closeReason == MP_CLOSE_RST);
        // Pure ACKs of unknown connections start nothing; other ports are not ours.
        feed(5002, 3306, 1, 1, kTcpAck, "", 9);
        feed(5003, 8080, 1, 1, kTcpAck, "x", 9);
        CHECK(t.stats().ignored == 1);
        CHECK(t.stats().notServerPort == 1);
        // The connection bound evicts the least recently active one.
        feed(6001, 3306, 1, 1, kTcpAck, "a", 10);
        feed(6002, 3306, 1, 1, kTcpAck, "b", 11);
        feed(6003, 3306, 1, 1, kTcpAck, "c", 12);
        CHECK(h.done.back()->closeReason == MP_CLOSE_EVICTED);
        CHECK(h.done.back()->key.rfind("127.0.0.1:6001>", 0) == 0);
        // Idle connections close at the next tick past the timeout.
        t.tick(5000);
        CHECK(t.size() == 0);
        CHECK(h.done.back()->closeReason == MP_CLOSE_IDLE);
        CHECK(t.stats().closed[MP_CLOSE_IDLE] == 2);
        CHECK(h.ticks == 1);
    }

    TEST_CASE("a full batch followed by silence reaches the workers (wakeStalled, end of read)") {
        // Live capture: a read that ends on exactly a full batch. The pipeline takes a full
        // batch to mean that more follows, and leaves its sleeping workers asleep; found by
        // the live sysbench test, whose last FINs sat queued for good (about 1 read in 64).
        struct Counting : StreamHandler {
            std::atomic<uint64_t> bytes{0};
            void* open(const mp_flow&) override { return this; }
            void data(void*, uint32_t, const uint8_t*, size_t n, uint64_t) override { bytes += n; }
            void gap(void*, uint32_t, uint64_t, uint64_t) override {}
            void close(void*, uint32_t, uint64_t) override {}
            void tick(uint64_t) override {}
        };
        std::vector<std::vector<uint8_t>> store;
        uint32_t seq = 101;
        store.push_back(ipv4(tcp(5000, 3306, 100, 0, kTcpSyn, "")));
        store.push_back(
            ipv4(tcp(3306, 5000, 900, 101, kTcpSyn | kTcpAck, ""), 6, 0, 0x7f000002, 0x7f000001));
        while (store.size() < Pipeline::kFullBatch) {
            store.push_back(ipv4(tcp(5000, 3306, seq, 901, kTcpAck, "0123456789")));
            seq += 10;
        }
        const uint64_t sent = 10 * (Pipeline::kFullBatch - 2);
        std::vector<mp_frame> frames;
        for (auto& f : store) {
            mp_frame m{};
            m.ts_ns = 1000 + frames.size();
            m.link_type = 101;  // raw IP
            m.orig_len = static_cast<uint32_t>(f.size());
            m.data = mp_bytes{f.data(), f.size()};
            frames.push_back(m);
        }
        for (bool endOfRead : {false, true}) {
            CAPTURE(endOfRead);
            Counting h1, h2;
            PipelineOptions po;
            po.workers = 2;
            po.serverPorts = {3306};
            po.ringBytes = 1 << 20;
            Pipeline pipe(po, {&h1, &h2}, nullptr);
            pipe.start();
            std::this_thread::sleep_for(std::chrono::milliseconds(200));  // workers sleep
            REQUIRE(pipe.onFrames(frames.data(), frames.size()) == MP_OK);
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            CHECK(h1.bytes + h2.bytes == 0);  // queued, not worked on: the stall
            if (endOfRead) {
                pipe.onFrames(nullptr, 0);  // what capture-pcap sends after such a read
            } else {
                pipe.wakeStalled();  // what the host's timer calls every 100 ms
            }
            CHECK(mptest::eventually([&] { return h1.bytes + h2.bytes == sent; }));
            pipe.stop();
        }
    }

    TEST_CASE("every bundled capture replays identically with 1 and 4 workers") {
        std::vector<std::string> skipped;
        auto list = captures(skipped);
        for (const auto& s : skipped) {
            MESSAGE("skipped (not in tests/data, ../shared absent): " << s);
        }
        REQUIRE(list.size() >= 60);
        size_t conns = 0;
        for (const auto& fp : list) {
            const auto& file = fp.first;  // plain variables: CAPTURE takes them
            const auto& ports = fp.second;
            CAPTURE(file);
            Replay one = replay(file, ports, 1);
            Replay four = replay(file, ports, 4);
            REQUIRE(one.error.empty());
            CHECK(one.conns == four.conns);
            CHECK(one.flow.opened == four.flow.opened);
            CHECK(one.flow.reassembly.deliveredBytes == four.flow.reassembly.deliveredBytes);
            CHECK(one.flow.reassembly.gapBytes == four.flow.reassembly.gapBytes);
            CHECK(one.flow.reassembly.retransmittedBytes ==
                  four.flow.reassembly.retransmittedBytes);
            CHECK(one.flow.closed == four.flow.closed);
            CHECK(one.capture.frames == one.frames);
            CHECK(one.capture.queueDropped == 0);
            CHECK(four.capture.queueDropped == 0);
            conns += one.conns.size();
        }
        MESSAGE(list.size() << " captures, " << conns << " connections replayed");
    }

    TEST_CASE("stream bytes equal the TCP payload bytes tshark counts on our own captures") {
        // tshark -r FILE -T fields -e tcp.len | paste -sd+ | bc   (no loss or retransmission
        // in these captures, so every payload byte is delivered exactly once)
        const std::map<std::string, uint64_t> expected = {
            {"edge_cases_small.pcap", 185147},
            {"sysbench_ps_rw_2t_20tx.pcap", 820304},
            {"sysbench_text_rw_2t_20tx.pcap", 816746},
        };
        for (const auto& nb : expected) {
            const auto& name = nb.first;
            const auto& bytesExpected = nb.second;
            CAPTURE(name);
            Replay r = replay(mptest::sourceDir() + "/tests/data/pcap/" + name, {3306}, 2);
            CHECK(r.flow.reassembly.deliveredBytes == bytesExpected);
            CHECK(r.flow.reassembly.gapBytes == 0);
            CHECK(r.flow.midstream == 0);
            CHECK(r.flow.closed[MP_CLOSE_FIN] == r.flow.opened);
        }
    }
}
