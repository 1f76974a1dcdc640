// SPDX-License-Identifier: Apache-2.0
// Configuration: the original probe's files, the plugins section, and every kind of bad file.
#include "config/config.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "app/runtime.hpp"
#include "support/process.hpp"

using mp::host::ConfigError;
using mp::host::HostConfig;
using mp::host::Overrides;
using mp::host::parseConfig;

namespace {

// The message of the ConfigError that parsing `text` throws, or "" when it parses.
std::string parseError(const std::string& text) {
    try {
        parseConfig(text, "t.yaml", Overrides{});
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

// Parses and resolves against the real built plugins; returns the error or "".
std::string resolveError(const std::string& text) {
    try {
        HostConfig cfg = parseConfig(text, "t.yaml", Overrides{});
        mp::host::Runtime rt(cfg, mp::host::RuntimeOptions{});
        rt.loadPlugins();
        rt.resolve();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

std::string slotPlugin(const HostConfig& cfg, const std::string& slot) {
    for (const auto& s : cfg.slots) {
        if (s.slot == slot) {
            return s.plugin;
        }
    }
    return "(none)";
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("the original probe's README example maps onto plugins") {
        std::string path = mptest::sourceDir() + "/tests/data/config/original-probe.yaml";
        HostConfig cfg = mp::host::loadConfig(path, Overrides{});
        CHECK(cfg.slave);
        CHECK(cfg.serverPort == 8667);
        CHECK(cfg.intervalS == 10);
        CHECK(cfg.workers == 2);
        CHECK(slotPlugin(cfg, "capture") == "capture-pcap");
        CHECK(slotPlugin(cfg, "decoder") == "decoder-mysql");
        CHECK(slotPlugin(cfg, "cluster") == "cluster-gossip");
        CHECK(slotPlugin(cfg, "sinks[0]") == "sink-websocket");
        CHECK(slotPlugin(cfg, "sinks[1]") == "console-web");  // the console at /
        // The watcher's credentials are the decoder's server credentials; its dbname is
        // accepted and said to be unused.
        bool warned = false;
        for (const auto& w : cfg.warnings) {
            warned = warned || w.find("watcher.dbname") != std::string::npos;
            CHECK(w.find("watcher.passward") == std::string::npos);
        }
        CHECK(warned);
        const auto& decoder = *std::find_if(cfg.slots.begin(), cfg.slots.end(),
                                            [](const auto& s) { return s.slot == "decoder"; });
        REQUIRE(decoder.settings.count("server") == 1);
        CHECK(decoder.settings.at("server").node.Scalar() == "test");
        CHECK(decoder.settings.at("server_user").node.Scalar() == "test");
        CHECK(decoder.settings.at("server_password").node.Scalar() == "test");
        // Legacy keys reach the plugin properties.
        const auto& capture = cfg.slots.front();
        REQUIRE(capture.settings.count("device") == 1);
        CHECK(capture.settings.at("device").node.Scalar() == "lo0,en0");
        // And the whole file validates against the real plugins.
        mp::host::Runtime rt(cfg, mp::host::RuntimeOptions{});
        rt.loadPlugins();
        CHECK_NOTHROW(rt.resolve());
    }

    TEST_CASE("every key of the original probe is accepted") {
        std::string path = mptest::sourceDir() + "/tests/data/config/original-full.yaml";
        HostConfig cfg = mp::host::loadConfig(path, Overrides{});
        CHECK(slotPlugin(cfg, "cluster") == "cluster-static");
        mp::host::Runtime rt(cfg, mp::host::RuntimeOptions{});
        rt.loadPlugins();
        CHECK_NOTHROW(rt.resolve());
    }

    TEST_CASE("an empty file gives a master with the default plugins") {
        HostConfig cfg = parseConfig("", "t.yaml", Overrides{});
        CHECK(!cfg.slave);
        CHECK(cfg.serverPort == 8667);
        CHECK(cfg.intervalS == 5);
        CHECK(slotPlugin(cfg, "capture") == "(none)");
        CHECK(slotPlugin(cfg, "cluster") == "cluster-static");
        CHECK(slotPlugin(cfg, "sinks[0]") == "sink-websocket");
    }

    TEST_CASE("lists are accepted as sequences or comma-separated strings") {
        for (const char* text : {"slave: true\nprobe: {device: [lo, eth0]}",
                                 "slave: true\nprobe: {device: 'lo, eth0'}"}) {
            HostConfig cfg = parseConfig(text, "t.yaml", Overrides{});
            mp::host::Runtime rt(cfg, mp::host::RuntimeOptions{});
            rt.loadPlugins();
            CHECK_NOTHROW(rt.resolve());
            mp_property p{"device", MP_PROP_STRING_LIST, 0, nullptr, nullptr, 0, 0, nullptr};
            auto v = mp::host::convert("t.yaml", cfg.slots.front().settings.at("device"), p);
            CHECK(v.list == std::vector<std::string>{"lo", "eth0"});
        }
    }

    TEST_CASE("YAML syntax errors name the line") {
        std::string e = parseError("serverport: 1\nprobe: [unclosed\n");
        CHECK(e.find("t.yaml:") == 0);
        CHECK(e.find("YAML syntax error") != std::string::npos);
    }

    TEST_CASE("tabs in the indentation are named as such, with their line") {
        // The original's README sample: its cluster section is indented with a tab.
        std::string e = parseError(
            "slave: true\nserverport: 8667\ninterval: 10\ncluster:\n  gossip: true\n"
            "  \t  group: test\n  port: 0\n");
        CHECK(e ==
              "t.yaml:6: tab characters are not allowed for indentation in YAML, line 6: indent "
              "with spaces");
        // A tab inside a value is no indentation: the usual message.
        CHECK(parseError("probe: [unclosed\t\n").find("YAML syntax error") != std::string::npos);
    }

    TEST_CASE("probe: is for slaves, as in the original: a cluster master does not capture") {
        HostConfig master = parseConfig("probe: {device: lo, port: 3306}\n", "t.yaml", Overrides{});
        CHECK(slotPlugin(master, "capture") == "(none)");
        bool warned = false;
        for (const auto& w : master.warnings) {
            warned = warned || w.find("probe.device is not used") != std::string::npos;
        }
        CHECK(warned);
        HostConfig slave = parseConfig("slave: true\nprobe: {device: lo}\n", "t.yaml", Overrides{});
        CHECK(slotPlugin(slave, "capture") == "capture-pcap");
        // A node without a cluster captures; so does a master reading a file (a new key).
        HostConfig alone =
            parseConfig("probe: {device: lo}\nplugins: {cluster: none}\n", "t.yaml", Overrides{});
        CHECK(slotPlugin(alone, "capture") == "capture-pcap");
        HostConfig file = parseConfig("probe: {file: x.pcap}\n", "t.yaml", Overrides{});
        CHECK(slotPlugin(file, "capture") == "capture-pcap");
    }

    TEST_CASE("compat: a file with only the original's keys serves the original's callers") {
        auto api = [](const HostConfig& cfg, const std::string& slot) -> std::string {
            for (const auto& s : cfg.slots) {
                if (s.slot == slot) {
                    auto it = s.settings.find("api");
                    return it == s.settings.end() ? "(unset)" : it->second.node.Scalar();
                }
            }
            return "(no slot)";
        };
        std::string path = mptest::sourceDir() + "/tests/data/config/original-full.yaml";
        HostConfig original = mp::host::loadConfig(path, Overrides{});
        CHECK(original.originalApi);
        CHECK(api(original, "cluster") == "original");
        CHECK(api(original, "sinks[0]") == "original");
        HostConfig mixed = parseConfig("slave: false\nnodename: n1\n", "t.yaml", Overrides{});
        CHECK(!mixed.originalApi);
        CHECK(api(mixed, "cluster") == "(unset)");
        CHECK(!parseConfig("", "t.yaml", Overrides{}).originalApi);
        HostConfig forced = parseConfig(
            "compat: original\nplugins:\n  sinks: [{plugin: sink-websocket, config: {api: "
            "native}}]\n",
            "t.yaml", Overrides{});
        CHECK(api(forced, "cluster") == "original");
        CHECK(api(forced, "sinks[0]") == "native");  // set by the file: kept
        CHECK(!parseConfig("compat: native\nslave: false\n", "t.yaml", Overrides{}).originalApi);
        CHECK(resolveError("compat: original\n") == "");  // every default plugin takes it
    }

    TEST_CASE("unknown keys are refused with file, line and key path") {
        CHECK(parseError("interval: 5\ncolour: blue\n") ==
              "t.yaml:2: colour: unknown key for the top level (known: compat, interval, loglevel, "
              "nodename, serveraddress, serverport, slave, slowthresholdms, statedir)");
        std::string e = parseError("probe:\n  port: 3306\n  devise: lo\n");
        CHECK(e.find("t.yaml:3: probe.devise: unknown key (known: device, port,") == 0);
        e = parseError("plugins:\n  capture: {plugin: capture-pcap, confg: {}}\n");
        CHECK(e.find("t.yaml:2: plugins.capture.confg: unknown key") == 0);
        e = parseError("plugins:\n  sink: sink-websocket\n");
        CHECK(e.find("t.yaml:2: plugins.sink: unknown key") == 0);
    }

    TEST_CASE("wrong types are refused") {
        CHECK(parseError("serverport: abc\n") ==
              "t.yaml:1: serverport: expected an integer, got 'abc'");
        CHECK(parseError("slave: maybe\n") ==
              "t.yaml:1: slave: expected true or false, got 'maybe'");
        CHECK(parseError("interval: [1]\n") == "t.yaml:1: interval: expected int, got a list");
        CHECK(parseError("websocket:\n  maxmessagesize: big\n") ==
              "t.yaml:2: websocket.maxmessagesize: expected an integer, got 'big'");
        CHECK(parseError("probe: 3306\n") == "t.yaml:1: probe: expected a mapping");
        CHECK(parseError("plugins:\n  sinks: sink-websocket\n") ==
              "t.yaml:2: plugins.sinks: expected a list");
    }

    TEST_CASE("impossible values are refused") {
        CHECK(parseError("serverport: 70000\n") ==
              "t.yaml:1: serverport: value 70000 is out of range [0, 65535]");
        CHECK(parseError("interval: 0\n").find("interval: value 0 is out of range") !=
              std::string::npos);
        CHECK(parseError("probe:\n  workers: 0\n") ==
              "t.yaml:2: probe.workers: value 0 is out of range [1, 64]");
        CHECK(parseError("probe:\n  snappylength: 300000\n") ==
              "t.yaml:2: probe.snappylength: value 300000 is out of range [0, 262144]");
        CHECK(parseError("stream:\n  max_worker_buffer_mb: 0\n") ==
              "t.yaml:2: stream.max_worker_buffer_mb: value 0 is out of range [1, 1048576]");
        CHECK(parseError("stream:\n  max_worker_buffer_mb: yes\n").find("max_worker_buffer_mb") !=
              std::string::npos);
        CHECK(parseError("loglevel: loud\n") ==
              "t.yaml:1: loglevel: 'loud' is not one of trace|debug|info|warn|error");
        CHECK(parseError("slave: true\n").find("set probe.device (or probe.file)") !=
              std::string::npos);
    }

    TEST_CASE("the stream section's bounds") {
        HostConfig cfg = parseConfig("", "t.yaml", Overrides{});
        CHECK(cfg.stream.maxBufferKb == 4096);
        CHECK(cfg.stream.maxWorkerBufferMb == 64);
        cfg = parseConfig("stream:\n  max_buffer_kb: 512\n  max_worker_buffer_mb: 8\n", "t.yaml",
                          Overrides{});
        CHECK(cfg.stream.maxBufferKb == 512);
        CHECK(cfg.stream.maxWorkerBufferMb == 8);
    }

    TEST_CASE("duplicate keys are refused") {
        std::string e = parseError("interval: 5\ninterval: 6\n");
        // yaml-cpp itself may refuse the duplicate; either way the line is named.
        CHECK(e.find("t.yaml:2") == 0);
    }

    TEST_CASE("plugin properties are validated against the plugin's own table") {
        CHECK(resolveError("plugins:\n  capture:\n    plugin: capture-pcap\n    config:\n"
                           "      file: x.pcap\n      snaplen: -1\n") ==
              "t.yaml:6: plugins.capture.config.snaplen: value -1 is out of range [0, 262144]");
        std::string e = resolveError(
            "plugins:\n  capture:\n    plugin: capture-pcap\n    config: {file: x, colour: 1}\n");
        CHECK(e.find("t.yaml:4: plugins.capture.config.colour: unknown key for plugin "
                     "capture-pcap (known: batch_ms, buffer_mb, device,") == 0);
        e = resolveError(
            "plugins:\n  sinks:\n    - {plugin: sink-websocket, config: {format: xml}}\n");
        CHECK(e ==
              "t.yaml:3: plugins.sinks[0].config.format: 'xml' is not one of "
              "auto|native|mysqlprobe-v1");
    }

    TEST_CASE("unknown plugins and plugins in the wrong slot are refused") {
        CHECK(resolveError("plugins:\n  capture: capture-foo\n") ==
              "t.yaml:2: plugins.capture: no plugin named 'capture-foo' (capture plugins found: "
              "capture-pcap)");
        CHECK(resolveError("plugins:\n  capture: sink-websocket\n") ==
              "t.yaml:2: plugins.capture: plugin 'sink-websocket' is a sink plugin and cannot "
              "fill the capture slot");
    }

    TEST_CASE("a key set both the old way and in plugins is refused") {
        std::string e = parseError(
            "probe:\n  port: 3306\nplugins:\n  capture:\n    plugin: capture-pcap\n    config: "
            "{port: 3307, file: x}\n");
        CHECK(e.find("t.yaml:6: plugins.capture.config.port: also set by probe.port (line 2)") ==
              0);
    }

    TEST_CASE("slots can be switched off and chosen explicitly") {
        HostConfig cfg =
            parseConfig("cluster: {gossip: true}\nplugins:\n  cluster: none\n  sinks: []\n",
                        "t.yaml", Overrides{});
        CHECK(cfg.slots.empty());
        cfg = parseConfig("cluster: {gossip: true}\n", "t.yaml", Overrides{});
        CHECK(slotPlugin(cfg, "cluster") == "cluster-gossip");
    }

    TEST_CASE("records: sources, a sink's records: and reports:, the records section") {
        HostConfig cfg = parseConfig(
            "records: {max_buffer_mb: 8, drain_ms: 500}\nplugins:\n  cluster: none\n"
            "  sinks:\n    - {plugin: sink-amqp, records: [binlog.*, mysql.inbound], "
            "reports: false}\n  sources:\n    - source-counter\n    - {plugin: source-x}\n",
            "t.yaml", Overrides{});
        CHECK(cfg.records.maxBufferMb == 8);
        CHECK(cfg.records.drainMs == 500);
        REQUIRE(cfg.slots.size() == 3);
        CHECK(cfg.slots[0].records == std::vector<std::string>{"binlog.*", "mysql.inbound"});
        CHECK_FALSE(cfg.slots[0].reports);
        CHECK(cfg.slots[1].slot == "sources[0]");
        CHECK(cfg.slots[1].kind == MP_KIND_SOURCE);
        CHECK(cfg.slots[2].plugin == "source-x");
        CHECK(parseError("plugins:\n  sinks:\n    - {plugin: s, records: [Binlog]}\n") ==
              "t.yaml:3: plugins.sinks[0].records: 'Binlog' is not a stream name or pattern "
              "(words of [a-z0-9_-] joined by '.', optionally ending in '.*'; or '*')");
        CHECK(parseError("plugins:\n  sources:\n    - {plugin: s, records: [a]}\n") ==
              "t.yaml:3: plugins.sources[0].records: unknown key (expected 'plugin' or 'config')");
        CHECK(parseError("plugins:\n  sources: source-counter\n") ==
              "t.yaml:2: plugins.sources: expected a list");
        // A sink without on_record cannot subscribe to records.
        std::string e;
        try {
            HostConfig c = parseConfig(
                "serverport: 0\nplugins:\n  cluster: none\n  sinks:\n"
                "    - {plugin: sink-websocket, records: ['*']}\n",
                "t.yaml", Overrides{});
            mp::host::RuntimeOptions ro;
            ro.serveHttp = false;
            mp::host::Runtime rt(c, ro);
            rt.loadPlugins();
            rt.resolve();
            rt.create();
        } catch (const std::exception& ex) {
            e = ex.what();
        }
        CHECK(e ==
              "t.yaml:5: plugins.sinks[0]: sink-websocket takes no records (it has no "
              "on_record hook): remove `records:` or choose a plugin that takes them");
        // The cluster subscribes too (a master merging reports taken from a broker); it has no
        // `reports:` key, and decoders subscribe to nothing.
        HostConfig cc = parseConfig(
            "serverport: 0\nplugins:\n  cluster: {plugin: cluster-static, "
            "records: [mysqlprobe.report]}\n",
            "t.yaml", Overrides{});
        bool found = false;
        for (const auto& slot : cc.slots) {
            if (slot.kind == MP_KIND_CLUSTER) {
                found = slot.records == std::vector<std::string>{"mysqlprobe.report"};
            }
        }
        CHECK(found);
        auto refused = [](const std::string& text) {
            try {
                parseConfig(text, "t.yaml", Overrides{});
            } catch (const ConfigError& ex) {
                return std::string(ex.what());
            }
            return std::string("accepted");
        };
        CHECK(refused("plugins:\n  cluster: {plugin: cluster-static, reports: false}\n") ==
              "t.yaml:2: plugins.cluster.reports: unknown key (expected 'plugin', 'config' or "
              "'records')");
        CHECK(refused("plugins:\n  decoder: {plugin: decoder-mysql, records: ['*']}\n") ==
              "t.yaml:2: plugins.decoder.records: unknown key (expected 'plugin' or 'config')");
        CHECK(mp::host::streamMatches("binlog.*", "binlog.rows"));
        CHECK_FALSE(mp::host::streamMatches("binlog.*", "binlog"));
        CHECK_FALSE(mp::host::streamMatches("binlog.*", "binlogx.rows"));
        CHECK(mp::host::streamMatches("*", "a"));
        CHECK_FALSE(mp::host::validStreamName("a..b"));
        CHECK_FALSE(mp::host::validStreamName(std::string(65, 'a')));
    }

    TEST_CASE("statedir: made at start, given to plugins as state.dir") {
        // What host_get("state.dir") answers a plugin of a node made from `text`.
        auto stateDir = [](const std::string& text) {
            HostConfig cfg = parseConfig(text, "/etc/probe/t.yaml", Overrides{});
            mp::host::RuntimeOptions ro;
            ro.serveHttp = false;
            mp::host::Runtime rt(cfg, ro);
            rt.loadPlugins();
            rt.resolve();
            rt.create();
            REQUIRE(!rt.instances().empty());
            mp_str out{};
            REQUIRE(rt.hostGet(rt.instances().front()->host.get(), "state.dir", &out) == MP_OK);
            return std::string(out.data, out.len);
        };
        std::string dir = mptest::tempDir("statedir") + "/state/deeper";
        CHECK(stateDir("statedir: " + dir + "\nplugins:\n  cluster: none\n") == dir);
        CHECK(std::filesystem::is_directory(dir));
        // Without statedir: the configuration file's folder.
        CHECK(stateDir("plugins:\n  cluster: none\n") == "/etc/probe");
    }

    TEST_CASE("command-line overrides: -r and --port") {
        Overrides ov;
        ov.readFile = "x.pcap";
        ov.ports = "3307";
        HostConfig cfg = mp::host::loadConfig("", ov);
        REQUIRE(cfg.slots.size() == 2);  // offline: capture and decoder only
        CHECK(slotPlugin(cfg, "capture") == "capture-pcap");
        CHECK(cfg.slots[0].settings.at("file").node.Scalar() == "x.pcap");
        CHECK(cfg.slots[0].settings.at("port").node.Scalar() == "3307");
    }

    TEST_CASE("a missing file is one clear line") {
        try {
            mp::host::loadConfig("/nonexistent/probe.yaml", Overrides{});
            FAIL("no error");
        } catch (const ConfigError& e) {
            CHECK(std::string(e.what()) ==
                  "/nonexistent/probe.yaml: cannot open the configuration file");
        }
    }
}

TEST_SUITE("config secrets") {
    // MP_PROP_SECRET: a refused value is never quoted back (errors end up in logs and terminals).
    TEST_CASE("the problem with a secret property's value does not show the value") {
        const mp_property props[] = {
            {"password", MP_PROP_STRING, MP_PROP_SECRET, "", "a secret", 0, 0, "a|b"},
            {"pin", MP_PROP_INT, MP_PROP_SECRET, "0", "a secret number", 0, 9999, nullptr},
            {"plain", MP_PROP_INT, 0, "0", "not a secret", 0, 9, nullptr},
            {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
        };
        auto problem = [&](const std::string& yaml) {
            YAML::Node root = YAML::Load(yaml);
            std::map<std::string, mp::host::Setting> settings;
            for (const auto& kv : root) {
                settings[kv.first.Scalar()] = mp::host::Setting{kv.second, kv.first.Scalar()};
            }
            try {
                mp::host::validate("t.yaml", "plugin p", root, settings, props);
            } catch (const ConfigError& e) {
                return std::string(e.what());
            }
            return std::string();
        };
        std::string e = problem("password: hunter2-wrong\n");
        CHECK(e.find("password: not a valid string (a secret: its value is not shown)") !=
              std::string::npos);
        CHECK(e.find("hunter2") == std::string::npos);
        e = problem("pin: 123456789\n");
        CHECK(e.find("pin: not a valid int (a secret") != std::string::npos);
        CHECK(e.find("123456789") == std::string::npos);
        e = problem("plain: 12345\n");  // an ordinary value is quoted, as before
        CHECK(e.find("12345") != std::string::npos);
        CHECK(problem("password: a\npin: 42\n").empty());
    }
}

TEST_SUITE("config json properties") {
    // MP_PROP_JSON (1.5): any YAML value, given to the plugin as JSON text.
    const mp_property kProps[] = {
        {"instances", MP_PROP_JSON, 0, "[]", "a list of maps", 0, 0, nullptr},
        {"options", MP_PROP_JSON, 0, "{retries: 3, mode: fast}", "a map", 0, 0, nullptr},
        {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
    };
    // The values of `yaml`, or the problem.
    std::string json(const std::string& yaml, const std::string& key) {
        YAML::Node root = YAML::Load(yaml);
        std::map<std::string, mp::host::Setting> settings;
        for (const auto& kv : root) {
            settings[kv.first.Scalar()] = mp::host::Setting{kv.second, kv.first.Scalar()};
        }
        try {
            auto values = mp::host::validate("t.yaml", "plugin p", root, settings, kProps);
            return values.at(key).s;
        } catch (const ConfigError& e) {
            return e.what();
        }
    }

    TEST_CASE("maps and lists become JSON; plain scalars are typed, quoted ones are strings") {
        CHECK(json("instances:\n"
                   "  - {host: db1, port: 3306, ro: yes, name: '3306', ratio: 0.5, none: ~,"
                   " tags: [a, 'b c'], quote: 'say \"hi\"'}\n"
                   "  - host: \"db2\"\n"
                   "    weight: -2\n",
                   "instances") ==
              R"([{"host":"db1","port":3306,"ro":true,"name":"3306","ratio":0.5,"none":null,)"
              R"("tags":["a","b c"],"quote":"say \"hi\""},{"host":"db2","weight":-2}])");
        CHECK(json("instances: db1\n", "instances") == R"("db1")");
        CHECK(json("instances: [nan, .inf, 1e3]\n", "instances") == R"(["nan",".inf",1000])");
    }

    TEST_CASE("defaults are YAML text too") {
        CHECK(json("{}", "instances") == "[]");
        CHECK(json("{}", "options") == R"({"retries":3,"mode":"fast"})");
    }

    TEST_CASE("bounds: depth, size, duplicate keys") {
        CHECK(json("instances: " + std::string(40, '[') + std::string(40, ']') + "\n",
                   "instances") == "t.yaml:1: instances: nested deeper than 32 levels");
        std::string big = "instances: [";
        for (int i = 0; i < 120000; ++i) {
            big += "abcdefghij,";
        }
        big += "z]\n";
        CHECK(json(big, "instances") == "t.yaml:1: instances: larger than 1 MiB as JSON");
        CHECK(json("instances: {a: 1, [x]: 2}\n", "instances") ==
              "t.yaml:1: instances: mapping keys must be scalars");
    }
}
