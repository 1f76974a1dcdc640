// SPDX-License-Identifier: Apache-2.0
// console-web's window: reports held within their bounds, merged exactly, queried.
#include "window.hpp"

#include <Poco/JSON/Parser.h>
#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>

namespace {

using mp::console::Window;
using Poco::JSON::Array;
using Poco::JSON::Object;

struct Exec {
    std::string server;
    std::string schema;
    std::string fingerprint;
    uint64_t id;
    double us;
    uint16_t error = 0;
    uint64_t rows = 0;
};

// A native report as the host writes one, built with the shared report model.
std::string reportJson(uint64_t seq, const std::vector<Exec>& execs, uint64_t kernelDropped = 0,
                       uint64_t probeDropped = 0) {
    mp::report::Section s;
    for (const Exec& e : execs) {
        mp::report::TemplateStats* t = s.findOrAdd(e.server, e.schema, e.id);
        t->fingerprint = e.fingerprint;
        t->count++;
        t->rowsReturned += e.rows;
        if (e.error != 0) {
            t->errors++;
            t->errorCodes[e.error]++;
        } else {
            t->latency.add(e.us);
        }
        s.commands["COM_QUERY"]++;
    }
    return "{\"version\":1,\"node\":\"n1:8667\",\"seq\":" + std::to_string(seq) +
           ",\"interval\":{\"start_ns\":" + std::to_string(seq * 1000000000) +
           ",\"end_ns\":" + std::to_string((seq + 1) * 1000000000) +
           "},\"capture\":{\"packets\":" + std::to_string(seq * 100) +
           ",\"kernel_dropped\":" + std::to_string(kernelDropped) +
           ",\"probe_dropped\":" + std::to_string(probeDropped) +
           ",\"connections\":{\"opened\":3}}," + s.json() + "}";
}

Object::Ptr parse(const std::string& json) {
    Poco::JSON::Parser p;
    return p.parse(json).extract<Object::Ptr>();
}

std::string state(const Window& w, mp::console::Query q = {}) { return w.state(q); }

const std::string kA = "select c from t where id = ?";
const std::string kB = "update t set k = k + ? where id = ?";
const std::string kC = "insert into u values (...)";

}  // namespace

TEST_CASE("the window merges the held reports exactly; the last view is the newest report") {
    Window w(10, 64 << 20);
    std::vector<Exec> r1{{"10.0.0.1:3306", "app", kA, 1, 100},
                         {"10.0.0.1:3306", "app", kA, 1, 300},
                         {"10.0.0.1:3306", "app", kB, 2, 1000, 1062}};
    std::vector<Exec> r2{{"10.0.0.1:3306", "app", kA, 1, 200, 0, 5},
                         {"10.0.0.1:3306", "app", kC, 3, 50}};
    w.add(mp::console::parseReport(reportJson(1, r1), 1000));
    w.add(mp::console::parseReport(reportJson(2, r2), 1000));
    REQUIRE(w.intervals() == 2);

    // The expected window: the same executions in one sketch.
    mp::report::LatencySketch all;
    all.add(100);
    all.add(300);
    all.add(200);

    Object::Ptr s = parse(state(w));
    CHECK(s->getValue<std::string>("view") == "window");
    CHECK(s->getValue<uint64_t>("templates_total") == 3);
    Array::Ptr rows = s->getArray("rows");
    REQUIRE(rows->size() == 3);
    std::map<std::string, Object::Ptr> byText;
    for (size_t i = 0; i < rows->size(); ++i) {
        byText[rows->getObject(i)->getValue<std::string>("fingerprint")] = rows->getObject(i);
    }
    Object::Ptr a = byText.at(kA);
    CHECK(a->getValue<uint64_t>("count") == 3);
    CHECK(a->getValue<uint64_t>("rows") == 5);
    CHECK(a->getValue<double>("p99") == doctest::Approx(all.quantile(0.99)).epsilon(0.001));
    CHECK(a->getValue<double>("total_us") == doctest::Approx(600));
    // its series: one point per held interval, oldest first: [count, p50, p99]
    Array::Ptr series = a->getArray("series");
    REQUIRE(series->size() == 2);
    CHECK(series->getArray(0)->getElement<uint64_t>(0) == 2);
    CHECK(series->getArray(1)->getElement<uint64_t>(0) == 1);
    CHECK(byText.at(kB)->getValue<uint64_t>("errors") == 1);
    CHECK(byText.at(kB)->getArray("series")->getArray(1)->getElement<uint64_t>(0) == 0);

    mp::console::Query last;
    last.view = mp::console::View::Last;
    Object::Ptr l = parse(state(w, last));
    CHECK(l->getValue<uint64_t>("templates_total") == 2);  // kA and kC in report 2
    CHECK(l->getValue<uint64_t>("seq") == 2);
}

TEST_CASE("sort, filter and limit choose the rows; ties are ordered by text") {
    Window w(10, 64 << 20);
    std::vector<Exec> r;
    for (int i = 0; i < 5; ++i) {
        r.push_back({"s1:3306", "app", kA, 1, 10});
    }
    for (int i = 0; i < 3; ++i) {
        r.push_back({"s1:3306", "app", kB, 2, 1000, 0, 7});
    }
    r.push_back({"s2:3306", "other", kC, 3, 5, 1146});
    r.push_back({"s2:3306", "other", kC, 3, 5, 1146});
    w.add(mp::console::parseReport(reportJson(1, r), 1000));
    auto texts = [&](mp::console::Query q) {
        std::vector<std::string> out;
        Array::Ptr rows = parse(w.state(q))->getArray("rows");
        for (size_t i = 0; i < rows->size(); ++i) {
            out.push_back(rows->getObject(i)->getValue<std::string>("fingerprint"));
        }
        return out;
    };
    mp::console::Query q;
    q.sort = mp::console::Sort::Count;
    CHECK(texts(q) == std::vector<std::string>{kA, kB, kC});
    q.sort = mp::console::Sort::TotalTime;
    CHECK(texts(q) == std::vector<std::string>{kB, kA, kC});
    q.sort = mp::console::Sort::Errors;
    CHECK(texts(q).front() == kC);
    q.sort = mp::console::Sort::Rows;
    CHECK(texts(q).front() == kB);
    q.text = "UPDATE";  // case-insensitive
    CHECK(texts(q) == std::vector<std::string>{kB});
    q.text = "";
    q.server = "s2:3306";
    CHECK(texts(q) == std::vector<std::string>{kC});
    q.server = "";
    q.schema = "app";
    q.limit = 1;
    q.sort = mp::console::Sort::Count;
    CHECK(texts(q) == std::vector<std::string>{kA});
    Object::Ptr s = parse(w.state(q));
    CHECK(s->getValue<uint64_t>("matched") == 2);
    CHECK(s->getArray("servers")->size() == 2);
    CHECK(s->getArray("schemas")->size() == 2);
}

TEST_CASE("the window holds at most window_intervals reports and at most max_memory bytes") {
    Window byCount(2, 64 << 20);
    for (uint64_t seq = 1; seq <= 5; ++seq) {
        byCount.add(mp::console::parseReport(reportJson(seq, {{"s:1", "", kA, 1, 10}}), 1000));
    }
    CHECK(byCount.intervals() == 2);
    CHECK(byCount.dropped() == 3);
    CHECK(parse(byCount.state({}))->getArray("rows")->getObject(0)->getValue<uint64_t>("count") ==
          2);

    // A bound below one report: the newest is still held (the page shows something), alone.
    Window byBytes(100, 1);
    for (uint64_t seq = 1; seq <= 3; ++seq) {
        byBytes.add(mp::console::parseReport(reportJson(seq, {{"s:1", "", kA, 1, 10}}), 1000));
    }
    CHECK(byBytes.intervals() == 1);
    CHECK(byBytes.dropped() == 2);
    CHECK(byBytes.heldBytes() > 0);

    // The bytes counted grow with what a report holds, not with a count.
    auto big = mp::console::parseReport(
        reportJson(1, {{"s:1", "", std::string(100000, 'x'), 1, 10}}), 1000);
    auto small = mp::console::parseReport(reportJson(1, {{"s:1", "", "x", 1, 10}}), 1000);
    CHECK(big->bytes >= small->bytes + 100000);
}

TEST_CASE(
    "capture health: drops of the last interval and of the window, from cumulative "
    "counters") {
    Window w(3, 64 << 20);
    w.add(mp::console::parseReport(reportJson(1, {}, 0, 0), 1000));
    Object::Ptr c = parse(w.state({}))->getObject("capture");
    CHECK(c->getValue<uint64_t>("drops_interval") == 0);
    CHECK(c->getValue<uint64_t>("drops_window") == 0);
    CHECK(c->getObject("total")->getValue<uint64_t>("connections.opened") == 3);
    w.add(mp::console::parseReport(reportJson(2, {}, 4, 1), 1000));
    c = parse(w.state({}))->getObject("capture");
    CHECK(c->getValue<uint64_t>("drops_interval") == 5);
    CHECK(c->getValue<uint64_t>("drops_window") == 5);
    CHECK(c->getObject("interval")->getValue<uint64_t>("packets") == 100);
    w.add(mp::console::parseReport(reportJson(3, {}, 4, 1), 1000));
    c = parse(w.state({}))->getObject("capture");
    CHECK(c->getValue<uint64_t>("drops_interval") == 0);
    CHECK(c->getValue<uint64_t>("drops_window") == 5);
    // three more quiet intervals: the drops leave the window
    for (uint64_t seq = 4; seq <= 6; ++seq) {
        w.add(mp::console::parseReport(reportJson(seq, {}, 4, 1), 1000));
    }
    c = parse(w.state({}))->getObject("capture");
    CHECK(c->getValue<uint64_t>("drops_window") == 0);
    CHECK(c->getObject("total")->getValue<uint64_t>("kernel_dropped") == 4);
}

TEST_CASE("capture health: decoder-mysql's coverage, when the report has it") {
    Window w(3, 64 << 20);
    w.add(mp::console::parseReport(reportJson(1, {}), 1000));
    CHECK(parse(w.state({}))->getObject("capture")->isNull("coverage"));
    std::string with = reportJson(2, {});
    with.insert(with.size() - 1,
                ",\"coverage\":{\"server\":\"10.0.0.5:3306\",\"readings\":3,"
                "\"interval\":{\"questions\":{\"seen\":90,\"counted\":100,\"ratio\":0.9}},"
                "\"total\":{\"questions\":{\"seen\":190,\"counted\":200,\"ratio\":0.95},"
                "\"select\":{\"seen\":1,\"counted\":1,\"ratio\":1}},\"ratio\":0.95}");
    w.add(mp::console::parseReport(with, 1000));
    Object::Ptr c = parse(w.state({}))->getObject("capture")->getObject("coverage");
    REQUIRE_FALSE(c.isNull());
    CHECK(c->getValue<std::string>("server") == "10.0.0.5:3306");
    CHECK(c->getValue<uint64_t>("seen") == 190);
    CHECK(c->getValue<uint64_t>("counted") == 200);
    CHECK(c->getValue<uint64_t>("interval_seen") == 90);
    CHECK(c->getValue<uint64_t>("interval_counted") == 100);
    CHECK_FALSE(c->has("error"));
    // A failed reading: no interval figures, the error, and text bounded.
    std::string failed = reportJson(3, {});
    failed.insert(failed.size() - 1, ",\"coverage\":{\"server\":\"" + std::string(1000, 's') +
                                         "\",\"error\":\"" + std::string(2000, 'e') +
                                         "\",\"total\":{\"questions\":{\"seen\":190,"
                                         "\"counted\":200}}}");
    w.add(mp::console::parseReport(failed, 1000));
    c = parse(w.state({}))->getObject("capture")->getObject("coverage");
    CHECK(c->getValue<std::string>("server").size() == 256);
    CHECK(c->getValue<std::string>("error").size() == 512);
    CHECK_FALSE(c->has("interval_seen"));
    // Garbage in the member: refused or ignored, never a crash.
    std::string bad = reportJson(4, {});
    bad.insert(bad.size() - 1, ",\"coverage\":{\"total\":{\"questions\":{\"seen\":-1}}}");
    CHECK_THROWS(mp::console::parseReport(bad, 1000));
}

TEST_CASE("one template in full, from the window and the last interval") {
    Window w(10, 64 << 20);
    w.add(mp::console::parseReport(
        reportJson(1, {{"s:1", "app", kA, 0xabc, 10}, {"s:1", "app", kB, 2, 10, 1146}}), 1000));
    w.add(mp::console::parseReport(reportJson(2, {{"s:1", "app", kA, 0xabc, 30}}), 1000));
    std::optional<std::string> d = w.detail("s:1", "app", 0xabc);
    REQUIRE(d);
    Object::Ptr o = parse(*d);
    CHECK(o->getObject("window")->getValue<uint64_t>("count") == 2);
    CHECK(o->getObject("last")->getValue<uint64_t>("count") == 1);
    CHECK(o->getArray("series")->size() == 2);
    std::optional<std::string> b = w.detail("s:1", "app", 2);
    REQUIRE(b);
    Object::Ptr ob = parse(*b);
    CHECK(ob->isNull("last"));
    CHECK(ob->getObject("window")->getObject("errors_by_code")->getValue<uint64_t>("1146") == 1);
    CHECK_FALSE(w.detail("s:1", "other", 0xabc));
    CHECK_FALSE(w.detail("s:1", "app", 99));
}

TEST_CASE("query parameters are checked; garbage reports are refused") {
    auto with = [](std::map<std::string, std::string> m) {
        return [m](const char* name) -> std::optional<std::string> {
            auto it = m.find(name);
            return it == m.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
    };
    mp::console::Query q = mp::console::parseQuery(
        with({{"view", "last"}, {"sort", "p99"}, {"q", "sel"}, {"limit", "2000"}}));
    CHECK(q.view == mp::console::View::Last);
    CHECK(q.sort == mp::console::Sort::P99);
    CHECK(q.text == "sel");
    CHECK(q.limit == 2000);
    CHECK_THROWS_AS(mp::console::parseQuery(with({{"view", "all"}})), std::invalid_argument);
    CHECK_THROWS_AS(mp::console::parseQuery(with({{"sort", "name"}})), std::invalid_argument);
    CHECK_THROWS_AS(mp::console::parseQuery(with({{"limit", "0"}})), std::invalid_argument);
    CHECK_THROWS_AS(mp::console::parseQuery(with({{"limit", "99999"}})), std::invalid_argument);
    CHECK_THROWS_AS(mp::console::parseQuery(with({{"limit", "-1"}})), std::invalid_argument);
    CHECK_THROWS_AS(mp::console::parseQuery(with({{"q", std::string(2000, 'a')}})),
                    std::invalid_argument);

    CHECK_THROWS_AS(mp::console::parseReport("not json", 10), std::runtime_error);
    CHECK_THROWS_AS(mp::console::parseReport("[1,2]", 10), std::runtime_error);
    CHECK_THROWS_AS(mp::console::parseReport(R"({"seq":1})", 10), std::runtime_error);
    CHECK_THROWS_AS(mp::console::parseReport(R"({"seq":-4,"totals":{}})", 10), std::runtime_error);
    // An empty window answers, with no rows and no capture.
    Window empty(5, 1 << 20);
    Object::Ptr s = parse(empty.state({}));
    CHECK(s->getArray("rows")->size() == 0);
    CHECK(s->isNull("capture"));
}
