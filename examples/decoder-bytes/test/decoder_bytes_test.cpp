// SPDX-License-Identifier: Apache-2.0
// decoder-bytes' unit test, on the SDK's fake host (mp/testing.hpp): two workers, streams fed by
// hand, then the interval's collect()/report() as the host runs them. No test framework: a
// failed check prints itself and the exit status says it.
#include <cstdio>
#include <mp/testing.hpp>
#include <string>

extern "C" const mp_plugin* mp_plugin_entry_v1(const mp_host_api* host);

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    failures += ok ? 0 : 1;
}

mp_flow flow(uint8_t last, uint16_t clientPort) {
    mp_flow f{};
    f.struct_size = sizeof f;
    f.ip_version = 4;
    f.client_port = clientPort;
    f.server_port = 3306;
    f.client_ip[0] = 10;
    f.client_ip[3] = 9;
    f.server_ip[0] = 10;
    f.server_ip[3] = last;
    return f;
}

}  // namespace

int main() {
    mp::testing::FakeHost host;
    const mp_plugin* desc = mp_plugin_entry_v1(host.api());
    check(desc != nullptr && desc->collect != nullptr && desc->report != nullptr,
          "the descriptor has the 1.3 collect/report hooks");
    auto w0 = host.create(desc);
    auto w1 = host.create(desc);
    w0.start();
    w1.start();

    void* a = w0.open(flow(1, 40000));  // worker 0: one connection to 10.0.0.1
    w0.data(a, MP_DIR_TO_SERVER, "select 1");
    w0.data(a, MP_DIR_TO_CLIENT, "0123456789");
    void* b = w1.open(flow(1, 40001));  // worker 1: another to the same server ...
    w1.data(b, MP_DIR_TO_SERVER, "ping");
    w1.gap(b, MP_DIR_TO_CLIENT, 100);
    void* c = w1.open(flow(2, 40002));  // ... and one to 10.0.0.2
    w1.data(c, MP_DIR_TO_CLIENT, "xy");
    w0.close(a);
    w1.close(b);

    std::string members = host.collectAndReport({&w0, &w1});
    check(members ==
              "\"bytes\":{\"servers\":{"
              "\"10.0.0.1:3306\":{\"connections\":2,\"to_server\":12,\"to_client\":10,"
              "\"gap_bytes\":100},"
              "\"10.0.0.2:3306\":{\"connections\":1,\"to_server\":0,\"to_client\":2,"
              "\"gap_bytes\":0}}}",
          "one report merges both workers: " + members);
    // collect() took the interval out: the next one starts from nothing but what follows.
    w1.data(c, MP_DIR_TO_CLIENT, "z");
    members = host.collectAndReport({&w0, &w1}, 2);
    check(members ==
              "\"bytes\":{\"servers\":{\"10.0.0.2:3306\":{\"connections\":0,\"to_server\":0,"
              "\"to_client\":1,\"gap_bytes\":0}}}",
          "the next interval holds only its own bytes: " + members);
    w1.close(c);
    return failures == 0 ? 0 : 1;
}
