// SPDX-License-Identifier: Apache-2.0
// The record bus on its own: routing by stream pattern, order per producer, the delivered mark
// (in order, stopping at a record given up), back-pressure by policy, retries of a full sink,
// and the byte budget back to 0 once everything is done.
#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "records/bus.hpp"
#include "support/process.hpp"

namespace {

using mp::host::RecordBus;

mp_record rec(const std::string& stream, const std::string& payload, uint64_t seq) {
    mp_record r{};
    r.struct_size = sizeof r;
    r.stream = mp_str{stream.data(), stream.size()};
    r.payload = mp_bytes{reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
    r.seq = seq;
    return r;
}

// A sink that keeps what it is given and answers as told.
struct TestSink {
    std::mutex mu;
    std::vector<std::pair<std::string, uint64_t>> seen;  // stream, seq
    std::vector<uint64_t> tokens;
    std::atomic<int> eagain{0};  // answer MP_EAGAIN this many times first
    bool doneAtOnce = true;
    RecordBus* bus = nullptr;

    mp_status take(const mp_record& r, uint64_t token) {
        if (eagain > 0) {
            --eagain;
            return MP_EAGAIN;
        }
        {
            std::lock_guard<std::mutex> lock(mu);
            seen.emplace_back(std::string(r.stream.data, r.stream.len), r.seq);
            tokens.push_back(token);
        }
        if (doneAtOnce) {
            bus->done(token, MP_OK);  // from inside the call, as the ABI allows
        }
        return MP_OK;
    }
    size_t count() {
        std::lock_guard<std::mutex> lock(mu);
        return seen.size();
    }
};

struct Marks {
    std::mutex mu;
    std::vector<uint64_t> seqs;
    uint64_t last() {
        std::lock_guard<std::mutex> lock(mu);
        return seqs.empty() ? 0 : seqs.back();
    }
};

RecordBus::SinkPort port(TestSink& s, std::vector<std::string> patterns) {
    return RecordBus::SinkPort{"test-sink", std::move(patterns),
                               [&s](const mp_record& r, uint64_t t) { return s.take(r, t); }};
}
RecordBus::ProducerPort producer(Marks& m, RecordBus::Policy policy = RecordBus::Policy::Drop) {
    return RecordBus::ProducerPort{"sources[0]", policy, [&m](uint64_t seq) {
                                       std::lock_guard<std::mutex> lock(m.mu);
                                       m.seqs.push_back(seq);
                                   }};
}

}  // namespace

TEST_SUITE("records") {
    TEST_CASE("routing by pattern, order per producer, marks in order, budget back to 0") {
        mp::host::Metrics metrics;
        RecordBus bus(1 << 20, metrics);
        TestSink all, binlog;
        all.bus = binlog.bus = &bus;
        bus.addSink(port(all, {"*"}));
        bus.addSink(port(binlog, {"binlog.*"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks));
        bus.start();
        CHECK(bus.emit(p, rec("binlog.rows", "a", 1)) == MP_OK);
        CHECK(bus.emit(p, rec("mysql.inbound", "b", 2)) == MP_OK);
        CHECK(bus.emit(p, rec("binlog.heartbeat", "c", 5)) == MP_OK);  // gaps in seq are fine
        CHECK(bus.emit(p, rec("binlog.rows", "d", 5)) == MP_EINVAL);   // not above the last
        CHECK(bus.emit(p, rec("Binlog", "e", 6)) == MP_EINVAL);        // not a stream name
        REQUIRE(mptest::eventually([&] { return marks.last() == 5; }, std::chrono::seconds(5)));
        CHECK(all.seen == std::vector<std::pair<std::string, uint64_t>>{
                              {"binlog.rows", 1}, {"mysql.inbound", 2}, {"binlog.heartbeat", 5}});
        CHECK(binlog.seen == std::vector<std::pair<std::string, uint64_t>>{
                                 {"binlog.rows", 1}, {"binlog.heartbeat", 5}});
        CHECK(bus.bufferedBytes() == 0);
        for (size_t i = 1; i < marks.seqs.size(); ++i) {
            CHECK(marks.seqs[i] > marks.seqs[i - 1]);
        }
        bus.stopDelivery(std::chrono::milliseconds(100));
        bus.finish();
    }

    TEST_CASE("a thread's kept route follows its bus and its stream, never a bus gone") {
        // emit() keeps, per thread, the sinks of the last stream it routed. The same names on
        // buses routed otherwise (one after another, maybe at the same address; and two at
        // once, emitted to in turn) must each go where their own bus sends them.
        mp::host::Metrics metrics;
        for (int round = 0; round < 3; ++round) {
            CAPTURE(round);
            auto bus = std::make_unique<RecordBus>(1 << 20, metrics);
            auto other = std::make_unique<RecordBus>(1 << 20, metrics);
            TestSink a, b, all;
            a.bus = b.bus = bus.get();
            all.bus = other.get();
            bus->addSink(port(a, {round == 0 ? "x.*" : "none.*"}));
            bus->addSink(port(b, {round == 1 ? "x.one" : "none.*"}));
            other->addSink(port(all, {"*"}));
            Marks marks, otherMarks;
            RecordBus::Producer* p = bus->addProducer(producer(marks));
            RecordBus::Producer* q = other->addProducer(producer(otherMarks));
            bus->start();
            other->start();
            uint64_t seq = 0;
            for (int i = 0; i < 4; ++i) {
                ++seq;
                CHECK(bus->emit(p, rec("x.one", "p", seq)) == MP_OK);
                CHECK(other->emit(q, rec("x.one", "p", seq)) == MP_OK);
                ++seq;
                CHECK(bus->emit(p, rec("x.two", "p", seq)) == MP_OK);
                CHECK(other->emit(q, rec("x.two", "p", seq)) == MP_OK);
            }
            CHECK(bus->emit(p, rec("X.one", "p", seq + 1)) == MP_EINVAL);  // still checked
            REQUIRE(
                mptest::eventually([&] { return marks.last() == seq && otherMarks.last() == seq; },
                                   std::chrono::seconds(5)));
            CHECK(a.count() == (round == 0 ? 8U : 0U));
            CHECK(b.count() == (round == 1 ? 4U : 0U));
            CHECK(all.count() == 8U);
            for (RecordBus* x : {bus.get(), other.get()}) {
                x->stopDelivery(std::chrono::milliseconds(100));
                x->finish();
            }
        }
    }

    TEST_CASE(
        "records of every size, across block ends and in blocks of their own, arrive intact") {
        // A producer's records are carved from its arena's blocks (256 KiB; records over 32 KiB
        // get one each) and the blocks come round again as records leave. Three producers on
        // their own threads, sizes that cross block ends, a buffer small enough that they wait
        // and blocks are reused many times; some records are held by the sink a while (done
        // later, from another thread): every payload must arrive as it was sent.
        mp::host::Metrics metrics;
        RecordBus bus(4 << 20, metrics);
        std::mutex mu;
        std::vector<uint64_t> held;
        std::atomic<size_t> seen{0}, bad{0};
        auto pattern = [](size_t producer, uint64_t seq, size_t i) {
            return static_cast<char>((producer * 7 + seq * 131 + i) & 0xff);
        };
        bus.addSink(RecordBus::SinkPort{
            "check", {"*"}, [&](const mp_record& r, uint64_t token) {
                const size_t producer = static_cast<size_t>(r.stream.data[2] - '0');
                for (size_t i = 0; i < r.payload.len; ++i) {
                    if (static_cast<char>(r.payload.data[i]) != pattern(producer, r.seq, i)) {
                        ++bad;
                        break;
                    }
                }
                ++seen;
                if (r.seq % 5 == 0) {
                    std::lock_guard<std::mutex> lock(mu);
                    held.push_back(token);  // done later, by the releaser below
                } else {
                    bus.done(token, MP_OK);
                }
                return MP_OK;
            }});
        constexpr size_t kProducers = 3;
        constexpr uint64_t kRecords = 1500;
        const size_t sizes[] = {0, 1, 100, 4000, 33000, 70000, 300000, 17, 250000, 900};
        Marks marks[kProducers];
        RecordBus::Producer* producers[kProducers];
        for (size_t k = 0; k < kProducers; ++k) {
            producers[k] = bus.addProducer(producer(marks[k], RecordBus::Policy::Wait));
        }
        bus.start();
        std::atomic<bool> emitting{true};
        std::thread releaser([&] {
            while (true) {
                const bool more = emitting.load();
                std::vector<uint64_t> now;
                {
                    std::lock_guard<std::mutex> lock(mu);
                    now.swap(held);
                }
                for (uint64_t token : now) {
                    bus.done(token, MP_OK);
                }
                if (!more && now.empty()) {
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        });
        std::vector<std::thread> threads;
        std::atomic<size_t> refused{0};
        for (size_t k = 0; k < kProducers; ++k) {
            threads.emplace_back([&, k] {
                const std::string stream = "p." + std::to_string(k);
                std::string payload;
                for (uint64_t seq = 1; seq <= kRecords; ++seq) {
                    payload.resize(sizes[(seq + k) % std::size(sizes)]);
                    for (size_t i = 0; i < payload.size(); ++i) {
                        payload[i] = pattern(k, seq, i);
                    }
                    refused += bus.emit(producers[k], rec(stream, payload, seq)) != MP_OK;
                }
            });
        }
        for (auto& t : threads) {
            t.join();
        }
        CHECK(refused.load() == 0);
        REQUIRE(mptest::eventually([&] { return seen.load() == kProducers * kRecords; },
                                   std::chrono::seconds(30)));
        emitting = false;
        releaser.join();
        CHECK(bad.load() == 0);
        for (auto& m : marks) {
            CHECK(
                mptest::eventually([&] { return m.last() == kRecords; }, std::chrono::seconds(5)));
        }
        CHECK(
            mptest::eventually([&] { return bus.bufferedBytes() == 0; }, std::chrono::seconds(5)));
        bus.stopDelivery(std::chrono::milliseconds(100));
        bus.finish();
    }

    TEST_CASE("a stream no sink takes counts as delivered") {
        mp::host::Metrics metrics;
        RecordBus bus(1 << 20, metrics);
        TestSink s;
        s.bus = &bus;
        bus.addSink(port(s, {"binlog.rows"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks));
        bus.start();
        CHECK(bus.emit(p, rec("other.stream", "x", 1)) == MP_OK);
        CHECK(mptest::eventually([&] { return marks.last() == 1; }, std::chrono::seconds(5)));
        CHECK(s.count() == 0);
        CHECK(metrics.value("mysqlprobe_host_records_unrouted_total") == 1);
        bus.stopDelivery(std::chrono::milliseconds(0));
        bus.finish();
    }

    TEST_CASE("records no sink takes wait behind a taken one, and move the mark with it") {
        mp::host::Metrics metrics;
        RecordBus bus(1 << 20, metrics);
        TestSink s;
        s.bus = &bus;
        s.doneAtOnce = false;
        bus.addSink(port(s, {"binlog.rows"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks));
        bus.start();
        REQUIRE(bus.emit(p, rec("other", "x", 1)) == MP_OK);  // nothing before it: marked now
        CHECK(mptest::eventually([&] { return marks.last() == 1; }, std::chrono::seconds(5)));
        REQUIRE(bus.emit(p, rec("binlog.rows", "a", 2)) == MP_OK);
        for (uint64_t seq = 3; seq <= 1000; ++seq) {
            REQUIRE(bus.emit(p, rec("other", "x", seq)) == MP_OK);
        }
        REQUIRE(bus.emit(p, rec("binlog.rows", "b", 1001)) == MP_OK);
        REQUIRE(bus.emit(p, rec("other", "x", 1002)) == MP_OK);
        REQUIRE(mptest::eventually([&] { return s.count() == 2; }, std::chrono::seconds(5)));
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
        CHECK(marks.last() == 1);  // 2 is not done: nothing after it is marked
        bus.done(s.tokens[0], MP_OK);
        CHECK(mptest::eventually([&] { return marks.last() == 1000; }, std::chrono::seconds(5)));
        bus.done(s.tokens[1], MP_OK);
        CHECK(mptest::eventually([&] { return marks.last() == 1002; }, std::chrono::seconds(5)));
        CHECK(bus.bufferedBytes() == 0);
        CHECK(metrics.value("mysqlprobe_host_records_unrouted_total") == 1000);
        bus.done(s.tokens[1] + 1, MP_OK);  // never given: ignored
        bus.done(0, MP_OK);
        bus.done(~uint64_t{0}, MP_OK);
        CHECK(metrics.value("mysqlprobe_host_records_delivered_total") == 2);
        bus.stopDelivery(std::chrono::milliseconds(0));
        bus.finish();
    }

    TEST_CASE("the mark waits for the slowest sink and stops at a record given up") {
        mp::host::Metrics metrics;
        RecordBus bus(1 << 20, metrics);
        TestSink fast, slow;
        fast.bus = slow.bus = &bus;
        slow.doneAtOnce = false;  // done later, by the test
        bus.addSink(port(fast, {"*"}));
        bus.addSink(port(slow, {"*"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks));
        bus.start();
        for (uint64_t seq = 1; seq <= 4; ++seq) {
            REQUIRE(bus.emit(p, rec("s", "payload", seq)) == MP_OK);
        }
        REQUIRE(mptest::eventually([&] { return slow.count() == 4; }, std::chrono::seconds(5)));
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        CHECK(marks.last() == 0);  // the fast sink alone moves nothing
        CHECK(bus.bufferedBytes() > 0);
        bus.done(slow.tokens[1], MP_OK);  // 2 first: the mark still waits for 1
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        CHECK(marks.last() == 0);
        bus.done(slow.tokens[0], MP_OK);
        CHECK(mptest::eventually([&] { return marks.last() == 2; }, std::chrono::seconds(5)));
        bus.done(slow.tokens[2], MP_ERROR);  // given up
        bus.done(slow.tokens[3], MP_OK);
        bus.done(slow.tokens[3], MP_OK);  // a second done of a token is ignored
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        CHECK(marks.last() == 2);  // stops before 3, for good
        CHECK(bus.bufferedBytes() == 0);
        CHECK(metrics.value("mysqlprobe_host_records_failed_total") == 1);
        CHECK(metrics.value("mysqlprobe_host_records_delivered_total") == 7);
        bus.stopDelivery(std::chrono::milliseconds(0));
        bus.finish();
    }

    TEST_CASE("a full sink is offered the record again; a full buffer drops or waits") {
        mp::host::Metrics metrics;
        const size_t record = 1000;
        RecordBus bus(3 * (record + 400), metrics);  // room for about three records
        TestSink s;
        s.bus = &bus;
        s.doneAtOnce = false;
        s.eagain = 3;
        bus.addSink(port(s, {"*"}));
        Marks dropMarks, waitMarks;
        RecordBus::Producer* live = bus.addProducer(producer(dropMarks));
        RecordBus::Producer* source = bus.addProducer(producer(waitMarks, RecordBus::Policy::Wait));
        bus.start();
        std::string payload(record, 'x');
        uint64_t taken = 0;
        uint64_t refused = 0;
        for (uint64_t seq = 1; seq <= 10; ++seq) {
            mp_status st = bus.emit(live, rec("live", payload, seq));
            (st == MP_OK ? taken : refused) += 1;
            CHECK((st == MP_OK || st == MP_EAGAIN));
        }
        CHECK(taken >= 2);
        CHECK(refused >= 5);
        CHECK(metrics.value("mysqlprobe_host_records_dropped_total") ==
              static_cast<int64_t>(refused));
        // The source waits for room: its emit returns once the sink has delivered some.
        std::atomic<bool> emitted{false};
        std::thread t([&] {
            CHECK(bus.emit(source, rec("src", payload, 1)) == MP_OK);
            emitted = true;
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        CHECK_FALSE(emitted.load());
        REQUIRE(mptest::eventually([&] { return s.count() == taken; }, std::chrono::seconds(5)));
        CHECK(metrics.value("mysqlprobe_host_records_retries_total") == 3);
        std::vector<uint64_t> tokens;
        {
            std::lock_guard<std::mutex> lock(s.mu);
            tokens = s.tokens;
        }
        std::set<uint64_t> unique(tokens.begin(), tokens.end());
        CHECK(unique.size() == tokens.size());  // a record offered again has a new token
        for (uint64_t token : tokens) {
            bus.done(token, MP_OK);
        }
        CHECK(mptest::eventually([&] { return emitted.load(); }, std::chrono::seconds(5)));
        t.join();
        REQUIRE(
            mptest::eventually([&] { return s.count() == taken + 1; }, std::chrono::seconds(5)));
        {
            std::lock_guard<std::mutex> lock(s.mu);
            bus.done(s.tokens.back(), MP_OK);
        }
        CHECK(mptest::eventually([&] { return waitMarks.last() == 1 && bus.bufferedBytes() == 0; },
                                 std::chrono::seconds(5)));
        bus.stopDelivery(std::chrono::milliseconds(0));
        bus.finish();
    }

    TEST_CASE("at stop, a waiting producer is released and what no sink took is counted") {
        mp::host::Metrics metrics;
        RecordBus bus(2000, metrics);
        TestSink s;
        s.bus = &bus;
        s.eagain = 1 << 30;  // never takes anything
        bus.addSink(port(s, {"*"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks, RecordBus::Policy::Wait));
        bus.start();
        std::string payload(1000, 'y');
        REQUIRE(bus.emit(p, rec("s", payload, 1)) == MP_OK);
        std::atomic<int> second{-1};
        std::thread t([&] { second = bus.emit(p, rec("s", payload, 2)); });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        CHECK(second.load() == -1);  // waiting for room
        bus.stopDelivery(std::chrono::milliseconds(50));
        t.join();
        CHECK(second.load() == MP_ECLOSED);
        CHECK(metrics.value("mysqlprobe_host_records_dropped_total") == 1);
        CHECK(bus.bufferedBytes() == 0);
        bus.finish();
        CHECK(marks.last() == 0);
    }

    TEST_CASE("a producer that stops no longer waits for room, other producers still do") {
        mp::host::Metrics metrics;
        RecordBus bus(2000, metrics);
        TestSink s;
        s.bus = &bus;
        s.eagain = 1 << 30;  // never takes anything
        bus.addSink(port(s, {"*"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks, RecordBus::Policy::Wait));
        RecordBus::Producer* q = bus.addProducer(producer(marks, RecordBus::Policy::Wait));
        bus.start();
        std::string payload(1000, 'y');
        REQUIRE(bus.emit(p, rec("s", payload, 1)) == MP_OK);
        std::atomic<int> blocked{-1};
        std::atomic<int> other{-1};
        std::thread t([&] { blocked = bus.emit(p, rec("s", payload, 2)); });
        std::thread u([&] { other = bus.emit(q, rec("s", payload, 1)); });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        CHECK(blocked.load() == -1);  // both wait for room
        CHECK(other.load() == -1);
        bus.closeProducer(p);  // its stop() begins: its wait ends
        t.join();
        CHECK(blocked.load() == MP_ECLOSED);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK(other.load() == -1);                               // the other one still waits
        CHECK(bus.emit(p, rec("s", payload, 3)) == MP_ECLOSED);  // no room: no wait
        bus.stopDelivery(std::chrono::milliseconds(10));
        u.join();
        CHECK(other.load() == MP_ECLOSED);
        bus.finish();
    }

    TEST_CASE("a batch: runs of one stream, taken in order up to the first record refused") {
        mp::host::Metrics metrics;
        RecordBus bus(1 << 20, metrics);
        TestSink binlog;
        binlog.bus = &bus;
        bus.addSink(port(binlog, {"binlog.*"}));
        Marks marks;
        RecordBus::Producer* p = bus.addProducer(producer(marks));
        bus.start();
        // Three runs (rows, a stream no sink takes, heartbeats), then a run past the 64 records
        // the bus takes under one lock.
        std::vector<std::string> streams = {"binlog.rows", "binlog.rows", "binlog.rows",
                                            "other",       "other",       "binlog.heartbeat"};
        for (int i = 0; i < 150; ++i) {
            streams.emplace_back("binlog.rows");
        }
        std::vector<std::string> payloads;
        std::vector<mp_record> recs;
        for (size_t i = 0; i < streams.size(); ++i) {
            payloads.push_back("p" + std::to_string(i));
        }
        for (size_t i = 0; i < streams.size(); ++i) {
            recs.push_back(rec(streams[i], payloads[i], 2 * i + 1));  // gaps are fine
        }
        std::vector<const mp_record*> ptrs;
        for (const auto& r : recs) {
            ptrs.push_back(&r);
        }
        size_t taken = 99;
        CHECK(bus.emit(p, ptrs.data(), ptrs.size(), taken) == MP_OK);
        CHECK(taken == ptrs.size());
        const uint64_t last = 2 * ptrs.size() - 1;
        REQUIRE(mptest::eventually([&] { return marks.last() == last; }, std::chrono::seconds(5)));
        std::vector<std::pair<std::string, uint64_t>> want;
        for (size_t i = 0; i < streams.size(); ++i) {
            if (streams[i] != "other") {
                want.emplace_back(streams[i], 2 * i + 1);
            }
        }
        CHECK(binlog.seen == want);
        CHECK(metrics.value("mysqlprobe_host_records_unrouted_total") == 2);
        CHECK(metrics.value("mysqlprobe_host_records_accepted_total") ==
              static_cast<int64_t>(ptrs.size()));

        // A batch stops at the first record refused: none after it is taken.
        uint64_t seq = last;
        std::string bigKey(256, 'k');
        const std::string a = "a", rows = "binlog.rows", bad = "Binlog";
        auto batch = [&](int refusedAt, const std::function<void(mp_record&)>& spoil) {
            const uint64_t lastTaken = seq;
            std::vector<mp_record> b;
            for (int i = 0; i < 5; ++i) {
                b.push_back(rec(rows, a, ++seq));
            }
            spoil(b[static_cast<size_t>(refusedAt)]);
            std::vector<const mp_record*> bp;
            for (const auto& r : b) {
                bp.push_back(&r);
            }
            size_t n = 99;
            mp_status st = bus.emit(p, bp.data(), bp.size(), n);
            CHECK(n == static_cast<size_t>(refusedAt));
            seq = lastTaken + static_cast<uint64_t>(refusedAt);  // the last one taken
            return st;
        };
        const size_t before = binlog.count();
        CHECK(batch(3, [&](mp_record& r) { r.seq = 1; }) == MP_EINVAL);  // not above the last
        CHECK(batch(2, [&](mp_record& r) {
                  r.key = mp_str{bigKey.data(), bigKey.size()};
              }) == MP_EINVAL);
        CHECK(batch(4, [&](mp_record& r) {
                  r.stream = mp_str{bad.data(), bad.size()};
              }) == MP_EINVAL);
        CHECK(batch(0, [&](mp_record& r) { r.seq = 2; }) == MP_EINVAL);  // the first one
        REQUIRE(mptest::eventually([&] { return marks.last() == seq; }, std::chrono::seconds(5)));
        CHECK(binlog.count() == before + 3 + 2 + 4);
        {
            std::lock_guard<std::mutex> lock(binlog.mu);
            for (size_t i = 1; i < binlog.seen.size(); ++i) {
                CHECK(binlog.seen[i].second > binlog.seen[i - 1].second);
            }
        }
        CHECK(bus.bufferedBytes() == 0);
        bus.stopDelivery(std::chrono::milliseconds(100));
        bus.finish();
    }

    TEST_CASE(
        "a batch larger than the room: a dropping producer gets what fits, a waiting one "
        "all of it as room comes") {
        mp::host::Metrics metrics;
        const size_t record = 1000;
        RecordBus bus(4 * (record + 400), metrics);  // room for about four records
        TestSink s;
        s.bus = &bus;
        s.doneAtOnce = false;
        bus.addSink(port(s, {"*"}));
        Marks dropMarks, waitMarks;
        RecordBus::Producer* live = bus.addProducer(producer(dropMarks));
        RecordBus::Producer* source = bus.addProducer(producer(waitMarks, RecordBus::Policy::Wait));
        bus.start();
        const std::string payload(record, 'x'), stream = "s";
        std::vector<mp_record> recs;
        for (uint64_t seq = 1; seq <= 10; ++seq) {
            recs.push_back(rec(stream, payload, seq));
        }
        std::vector<const mp_record*> ptrs;
        for (const auto& r : recs) {
            ptrs.push_back(&r);
        }
        size_t taken = 0;
        CHECK(bus.emit(live, ptrs.data(), ptrs.size(), taken) == MP_EAGAIN);
        CHECK(taken >= 3);
        CHECK(taken <= 4);
        CHECK(metrics.value("mysqlprobe_host_records_dropped_total") == 1);  // the one refused
        REQUIRE(mptest::eventually([&] { return s.count() == taken; }, std::chrono::seconds(5)));
        // The waiting producer's batch of ten goes through a buffer of four as the sink is done.
        std::atomic<bool> emitted{false};
        size_t sourceTaken = 0;
        std::thread t([&] {
            CHECK(bus.emit(source, ptrs.data(), ptrs.size(), sourceTaken) == MP_OK);
            emitted = true;
        });
        size_t doneCount = 0;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (doneCount < taken + 10 && std::chrono::steady_clock::now() < until) {
            std::vector<uint64_t> tokens;
            {
                std::lock_guard<std::mutex> lock(s.mu);
                tokens.assign(s.tokens.begin() + static_cast<std::ptrdiff_t>(doneCount),
                              s.tokens.end());
            }
            for (uint64_t token : tokens) {
                bus.done(token, MP_OK);
            }
            doneCount += tokens.size();
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        t.join();
        CHECK(emitted.load());
        CHECK(sourceTaken == 10);
        CHECK(doneCount == taken + 10);
        CHECK(mptest::eventually([&] { return waitMarks.last() == 10 && bus.bufferedBytes() == 0; },
                                 std::chrono::seconds(5)));
        CHECK(dropMarks.last() == taken);
        bus.stopDelivery(std::chrono::milliseconds(0));
        bus.finish();
    }
}
