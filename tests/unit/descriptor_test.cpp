// SPDX-License-Identifier: Apache-2.0
// The descriptor check, on descriptors built in memory (the .so fixtures are in tests/abi).
#include "plugin/descriptor.hpp"

#include <doctest/doctest.h>

namespace {

mp_status create(mp_host*, const mp_host_api*, const mp_config*, void** out) {
    *out = nullptr;
    return MP_OK;
}
void destroy(void*) {}
void* collect(void*, uint64_t, uint64_t) { return nullptr; }
mp_status report(void*, void* const*, size_t, const mp_writer*) { return MP_OK; }
mp_status streamOpen(void*, const mp_flow*, void**) { return MP_OK; }
void streamData(void*, void*, uint32_t, mp_bytes, uint64_t) {}
void streamGap(void*, void*, uint32_t, uint64_t, uint64_t) {}
void streamClose(void*, void*, uint32_t, uint64_t) {}

const mp_property kGood[] = {
    {"port", MP_PROP_INT, 0, "3306", "a port", 1, 65535, nullptr},
    {"mode", MP_PROP_STRING, 0, "a", "a mode", 0, 0, "a|b"},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};

mp_plugin good() {
    mp_plugin p{};
    p.struct_size = sizeof p;
    p.abi_major = MP_ABI_MAJOR;
    p.abi_minor = MP_ABI_MINOR;
    p.kind = MP_KIND_SINK;
    p.name = "sink-test";
    p.version = "1.0.0";
    p.properties = kGood;
    p.create = create;
    p.destroy = destroy;
    return p;
}

std::string check(const mp_plugin& p) {
    mp_plugin out{};
    return mp::host::checkDescriptor(&p, out);
}

}  // namespace

TEST_SUITE("descriptor") {
    TEST_CASE("accepts a well-formed descriptor") { CHECK(check(good()) == ""); }

    TEST_CASE("accepts a 1.0 plugin of exactly the minimum size") {
        mp_plugin p = good();
        p.struct_size = mp::host::kMinPluginSize;
        CHECK(check(p) == "");
    }

    TEST_CASE("refuses other majors and newer minors, naming both versions") {
        mp_plugin p = good();
        p.abi_major = 2;
        p.abi_minor = 3;
        CHECK(check(p) == "built for plugin ABI 2.3, this host speaks ABI 1.7");
        p = good();
        p.abi_minor = MP_ABI_MINOR + 1;
        CHECK(check(p) ==
              "built for plugin ABI 1.8, newer than this host's ABI 1.7 (upgrade mysqlprobe)");
    }

    TEST_CASE("refuses a short struct, missing hooks, bad names and kinds") {
        mp_plugin p = good();
        p.struct_size = 12;
        CHECK(check(p).find("descriptor is 12 bytes") == 0);
        p = good();
        p.create = nullptr;
        CHECK(check(p) == "plugin 'sink-test' lacks create()");
        p = good();
        p.name = "Sink_Test";
        CHECK(check(p).find("invalid plugin name") == 0);
        p = good();
        p.kind = 9;
        CHECK(check(p) == "unknown plugin kind 9");
        p = good();
        p.kind = MP_KIND_DECODER;
        CHECK(check(p) == "decoder 'sink-test' lacks a stream_* hook");
        p = good();
        p.version = nullptr;
        CHECK(check(p) == "plugin 'sink-test' has no version string");
        mp_plugin out{};
        CHECK(mp::host::checkDescriptor(nullptr, out) ==
              "the entry function returned no descriptor");
    }

    TEST_CASE("refuses broken property tables") {
        mp_property dup[] = {{"a", MP_PROP_INT, 0, "1", "", 0, 0, nullptr},
                             {"a", MP_PROP_INT, 0, "1", "", 0, 0, nullptr},
                             {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr}};
        mp_plugin p = good();
        p.properties = dup;
        CHECK(check(p) == "plugin 'sink-test': property 'a' is declared twice");
        mp_property badDefault[] = {{"n", MP_PROP_INT, 0, "ten", "", 0, 0, nullptr},
                                    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr}};
        p.properties = badDefault;
        CHECK(check(p) == "plugin 'sink-test': default of 'n': expected an integer, got 'ten'");
        mp_property outOfRange[] = {{"n", MP_PROP_INT, 0, "0", "", 1, 10, nullptr},
                                    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr}};
        p.properties = outOfRange;
        CHECK(check(p).find("default of 'n': value 0 is out of range [1, 10]") !=
              std::string::npos);
        mp_property badType[] = {{"n", 42, 0, nullptr, "", 0, 0, nullptr},
                                 {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr}};
        p.properties = badType;
        CHECK(check(p) == "plugin 'sink-test': property 'n' has unknown type 42");
    }

    TEST_CASE("collect() and report() (1.3): both or neither, decoders only") {
        mp_plugin d = good();
        d.kind = MP_KIND_DECODER;
        d.stream_open = streamOpen;
        d.stream_data = streamData;
        d.stream_gap = streamGap;
        d.stream_close = streamClose;
        CHECK(check(d) == "");
        d.collect = collect;
        d.report = report;
        CHECK(check(d) == "");
        d.report = nullptr;
        CHECK(check(d) == "plugin 'sink-test' has one of collect() and report(): both or neither");
        d.collect = nullptr;
        d.report = report;
        CHECK(check(d) == "plugin 'sink-test' has one of collect() and report(): both or neither");
        mp_plugin sink = good();
        sink.collect = collect;
        sink.report = report;
        CHECK(check(sink) ==
              "plugin 'sink-test' has collect() and report(), which only decoders may have");
        // A 1.2 decoder's descriptor ends before them: they read as absent.
        d.collect = collect;
        d.struct_size = offsetof(mp_plugin, collect);
        CHECK(check(d) == "");
    }

    TEST_CASE("json properties come with 1.5") {
        static const mp_property props[] = {
            {"instances", MP_PROP_JSON, 0, "[]", "a list of maps", 0, 0, nullptr},
            {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
        };
        mp_plugin p = good();
        p.properties = props;
        CHECK(check(p) == "");
        p.abi_minor = 4;
        CHECK(check(p) == "plugin 'sink-test': property 'instances' has unknown type 6");
    }

    TEST_CASE("sources and on_record (1.4): sources from 1.4 on, on_record for sinks and cluster") {
        mp_plugin src = good();
        src.kind = MP_KIND_SOURCE;
        CHECK(check(src) == "");
        src.abi_minor = 3;
        CHECK(check(src) == "unknown plugin kind 5 for ABI 1.3 (sources came with 1.4)");
        mp_plugin sink = good();
        sink.on_record = [](void*, const mp_record*, uint64_t) -> mp_status { return MP_OK; };
        CHECK(check(sink) == "");
        sink.kind = MP_KIND_CLUSTER;  // a master merging reports taken from a broker (1.5)
        CHECK(check(sink) == "");
        sink.abi_minor = 4;
        CHECK(check(sink) ==
              "plugin 'sink-test' has on_record(), which only sinks and (ABI 1.5 "
              "on) cluster plugins may have");
        sink.abi_minor = MP_ABI_MINOR;
        sink.kind = MP_KIND_CAPTURE;
        CHECK(check(sink) ==
              "plugin 'sink-test' has on_record(), which only sinks and (ABI 1.5 on) cluster "
              "plugins may have");
        sink.kind = MP_KIND_SINK;
        // A 1.3 sink's descriptor ends before it: it reads as absent.
        sink.struct_size = offsetof(mp_plugin, on_record);
        CHECK(check(sink) == "");
    }

    TEST_CASE("plugin names are kebab-case") {
        CHECK(mp::host::validPluginName("sink-websocket"));
        CHECK(mp::host::validPluginName("a1"));
        CHECK_FALSE(mp::host::validPluginName(""));
        CHECK_FALSE(mp::host::validPluginName("-a"));
        CHECK_FALSE(mp::host::validPluginName("a-"));
        CHECK_FALSE(mp::host::validPluginName("a--b"));
        CHECK_FALSE(mp::host::validPluginName("a b"));
        CHECK_FALSE(mp::host::validPluginName(nullptr));
        CHECK_FALSE(mp::host::validPluginName(std::string(65, 'a').c_str()));
    }
}
