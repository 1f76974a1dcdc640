// SPDX-License-Identifier: Apache-2.0
// source-counter on the SDK's fake host (mp/testing.hpp): the records it emits, the policy it
// declares, the checkpoint written from its delivered mark, the start after a checkpoint, and
// the stop once everything is delivered. No test framework: each check prints ok/FAIL.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mp/testing.hpp>
#include <string>
#include <thread>

extern "C" const mp_plugin* mp_plugin_entry_v1(const mp_host_api* host);

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += ok ? 0 : 1;
}

template <class F>
bool eventually(F cond) {
    for (int i = 0; i < 500 && !cond(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
}

}  // namespace

int main() {
    char dir[] = "/tmp/source-counter-test.XXXXXX";
    if (mkdtemp(dir) == nullptr) {
        return 2;
    }
    std::string mark = std::string(dir) + "/mark";
    {
        mp::testing::FakeHost host;
        host.config("count", "5").config("payload_bytes", "40").config("checkpoint", mark);
        host.config("exit_when_delivered", "true");
        auto src = host.create(mp_plugin_entry_v1(host.api()));
        check(host.declared().at("records.backpressure") == "wait",
              "declares the wait policy in create()");
        src.start();
        check(eventually([&] { return host.records().size() == 5; }), "emits 5 records");
        auto recs = host.records();
        bool numbered = true;
        for (size_t i = 0; i < recs.size(); ++i) {
            numbered = numbered && recs[i].seq == i + 1 && recs[i].stream == "example.counter" &&
                       recs[i].payload.size() == 40 &&
                       recs[i].payload.rfind("{\"n\":" + std::to_string(i + 1) + ",", 0) == 0;
        }
        check(numbered, "numbered 1..5 on example.counter, 40-byte JSON payloads");
        src.delivered(3);
        std::ifstream in(mark);
        uint64_t n = 0;
        in >> n;
        check(n == 3, "the delivered mark 3 is in the checkpoint");
        check(!host.shutdownRequest(), "no stop before all are delivered");
        src.delivered(5);
        check(host.shutdownRequest().has_value() && host.shutdownRequest()->first == 0,
              "asks the host to stop once all 5 are delivered");
        src.stop();
    }
    {
        mp::testing::FakeHost host;
        host.config("count", "8").config("checkpoint", mark);
        auto src = host.create(mp_plugin_entry_v1(host.api()));
        src.start();
        check(eventually([&] { return host.records().size() == 3; }),
              "after a checkpoint of 5, emits 6..8 only");
        auto recs = host.records();
        check(!recs.empty() && recs.front().seq == 6 && recs.back().seq == 8, "numbers 6 to 8");
        src.stop();
    }
    {
        // In batches of 4 (emit_records): 1..11 gathered and handed over as 4, 4 and 3, in order.
        mp::testing::FakeHost host;
        host.config("count", "11").config("batch", "4");
        auto src = host.create(mp_plugin_entry_v1(host.api()));
        src.start();
        check(eventually([&] { return host.records().size() == 11; }),
              "in batches of 4, emits 1..11");
        auto recs = host.records();
        bool inOrder = recs.size() == 11;
        for (size_t i = 0; inOrder && i < recs.size(); ++i) {
            inOrder = recs[i].seq == 1 + i &&
                      recs[i].payload.rfind("{\"n\":" + std::to_string(1 + i) + ",", 0) == 0 &&
                      recs[i].payload.size() == 100;
        }
        check(inOrder, "numbers 1 to 11 in order, each payload its own (moved in, not shared)");
        src.stop();
    }
    std::remove(mark.c_str());
    std::remove(dir);
    return failures == 0 ? 0 : 1;
}
