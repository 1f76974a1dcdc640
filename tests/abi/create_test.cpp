// SPDX-License-Identifier: Apache-2.0
// Create-time failures: the plugin loads and validates, then its create() fails. The host must
// exit 2 with "mysqlprobe: <slot> (<file>): create failed: <message>" as its last stderr line.
// Also the control (good_sink runs and stops cleanly) and a slot of the wrong kind.
#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <thread>

#include "abi_support.hpp"

using namespace abitest;

namespace {

/// Both --check (a dry run of every create()) and `-c` fail with create's message.
void expectCreateFailure(const std::string& fixture, const std::string& plugin,
                         const std::string& message) {
    INFO("fixture: ", fixture);
    std::string cfg = sinkConfig(fixture, plugin);
    const std::string line =
        "mysqlprobe: sinks[0] (" + fixtureLib(fixture) + "): create failed: " + message;

    Result check = runHost({"--check", "-c", cfg});
    INFO("--check stdout: ", check.out);
    INFO("--check stderr: ", check.err);
    CHECK(check.code == 2);
    CHECK(lastLine(check.err) == line);

    Result run = runHost({"-c", cfg});
    INFO("stdout: ", run.out);
    INFO("stderr: ", run.err);
    CHECK(run.code == 2);
    CHECK(lastLine(run.err) == line);
}

}  // namespace

TEST_CASE("create_fails: set_error(\"disk on fire\") and MP_ERROR") {
    expectCreateFailure("create_fails", "abi-create-fails", "disk on fire");
}

TEST_CASE("silent_create_fail: a failing status without a message") {
    expectCreateFailure("silent_create_fail", "abi-silent-create-fail",
                        "status " + std::to_string(MP_ENOMEM));
}

TEST_CASE("null_instance: MP_OK without an instance") {
    expectCreateFailure("null_instance", "abi-null-instance",
                        "create() returned OK but no instance");
}

TEST_CASE("throws_in_create: an exception escapes a raw create()") {
    expectCreateFailure("throws_in_create", "abi-throws-in-create",
                        "exception escaped the plugin: boom in create");
}

TEST_CASE("sdk_throws_in_create: the SDK turns a constructor's exception into set_error") {
    expectCreateFailure("sdk_throws_in_create", "abi-sdk-throws-in-create", "sdk boom");
}

TEST_CASE("good_sink from a plugin directory passes --check") {
    std::string cfg = sinkConfig("good_sink", "abi-good-sink");
    Result r = runHost({"--check", "-c", cfg});
    INFO("stderr: ", r.err);
    CHECK(r.code == 0);
    CHECK(r.out == cfg + ": OK (sinks[0]=abi-good-sink)\n");
}

TEST_CASE("good_sink's properties are validated like a built-in plugin's") {
    std::string cfg = sinkConfig("good_sink", "{plugin: abi-good-sink, config: {greting: hi}}");
    Result r = runHost({"--check", "-c", cfg});
    INFO("stderr: ", r.err);
    CHECK(r.code == 2);
    CHECK(r.out.empty());
    CHECK(lines(r.err).size() == 1);
    CHECK(startsWith(r.err, "mysqlprobe: "));
    CHECK(contains(r.err, "greting"));
}

TEST_CASE("good_sink runs with its configured property and stops cleanly on SIGTERM") {
    std::string cfg =
        sinkConfig("good_sink", "{plugin: abi-good-sink, config: {greeting: hi there}}");
    mptest::Process p({mptest::binary(), "-c", cfg});
    REQUIRE(p.started());
    bool running = mptest::eventually([&] { return contains(p.err(), "running (1 plugin"); },
                                      std::chrono::seconds(20));
    INFO("stderr: ", p.err());
    REQUIRE(running);
    CHECK(contains(p.err(), "abi-good-sink says 'hi there'"));
    p.signal(SIGTERM);
    REQUIRE(p.wait(std::chrono::seconds(15)));
    CHECK(p.exitCode() == 0);
}

TEST_CASE("refusing_sink: a sink's refusal is logged once with its message, not ignored") {
    std::string cfg = writeConfig("refusing-sink",
                                  "serverport: 0\nserveraddress: 127.0.0.1\n"
                                  "interval: 1\nplugins:\n  directories: ['" +
                                      fixtureDir("refusing_sink") +
                                      "']\n  cluster: none\n"
                                      "  sinks: [abi-refusing-sink]\n");
    mptest::Process p({mptest::binary(), "-c", cfg});
    REQUIRE(p.started());
    // Three reports refused (the third a second after the second), one line for all of them.
    std::this_thread::sleep_for(std::chrono::milliseconds(3300));
    p.signal(SIGTERM);
    REQUIRE(p.wait(std::chrono::seconds(15)));
    INFO("stderr: ", p.err());
    CHECK(p.exitCode() == 0);
    size_t refusals = 0;
    for (const auto& line : lines(p.err())) {
        refusals += contains(line, "sinks[0] refused report") ? 1 : 0;
    }
    CHECK(refusals == 1);
    CHECK(contains(p.err(), "sinks[0] refused report 1 (status 1: disk full)"));
}

TEST_CASE("role_sink: the cluster's role reaches other plugins (host_get, MP_EVENT_ROLE)") {
    auto run = [](const std::string& name, const std::string& cluster, const std::string& want) {
        std::string cfg = writeConfig(name,
                                      "serverport: 0\nserveraddress: 127.0.0.1\n"
                                      "plugins:\n  directories: ['" +
                                          fixtureDir("role_sink") + "']\n  cluster: " + cluster +
                                          "\n  sinks: [abi-role-sink]\n");
        mptest::Process p({mptest::binary(), "-c", cfg});
        REQUIRE(p.started());
        bool seen =
            mptest::eventually([&] { return contains(p.err(), want); }, std::chrono::seconds(20));
        INFO("stderr: ", p.err());
        CHECK(seen);
        p.signal(SIGTERM);
        REQUIRE(p.wait(std::chrono::seconds(15)));
        CHECK(p.exitCode() == 0);
        return p.err();
    };
    // A static master says so in create(): the sink reads it when it starts.
    run("role-static", "cluster-static", "role at start: master");
    // A sink's report is refused, each time, and the host says so once.
    std::string err = run("emit-refused", "cluster-static", "emit report: 8 8");
    size_t said = 0;
    for (size_t at = 0; (at = err.find("that its kind may not emit", at)) != std::string::npos;
         ++at) {
        ++said;
    }
    CHECK(said == 1);
    // A gossip node alone elects itself once it runs: the sink hears the change.
    run("role-gossip", "{plugin: cluster-gossip, config: {bind: 127.0.0.1}}", "role event: master");
}

TEST_CASE("a plugin of the wrong kind cannot fill a slot") {
    std::string cfg = writeConfig("wrong-kind",
                                  "serverport: 0\n"
                                  "serveraddress: 127.0.0.1\n"
                                  "plugins: {capture: sink-websocket, cluster: none, sinks: []}\n");
    Result r = runHost({"-c", cfg});
    INFO("stdout: ", r.out);
    INFO("stderr: ", r.err);
    CHECK(r.code == 2);
    CHECK(lines(r.err).size() == 1);
    CHECK(startsWith(r.err, "mysqlprobe: " + cfg));
    CHECK(contains(r.err,
                   "plugin 'sink-websocket' is a sink plugin and cannot fill the capture slot"));
}

TEST_CASE("a 1.2 decoder answering MP_EVENT_COLLECT still fills the report (2 workers)") {
    std::string cfg = writeConfig("legacy-decoder",
                                  "serverport: 0\n"
                                  "serveraddress: 127.0.0.1\n"
                                  "probe: {workers: 2}\n"
                                  "plugins:\n"
                                  "  directories: [" +
                                      fixtureDir("legacy_decoder") +
                                      "]\n"
                                      "  decoder: abi-legacy-decoder\n"
                                      "  cluster: none\n"
                                      "  sinks: []\n");
    Result r = runHost(
        {"-c", cfg, "-r", mptest::sourceDir() + "/tests/data/pcap/sysbench_text_rw_2t_20tx.pcap"});
    INFO("stdout: ", r.out);
    INFO("stderr: ", r.err);
    REQUIRE(r.code == 0);
    // The stream layer opened N connections; the decoder saw N streams and said so.
    const std::string opened = "\"connections\":{\"opened\":";
    size_t at = r.out.find(opened);
    REQUIRE(at != std::string::npos);
    std::string n = r.out.substr(at + opened.size(), r.out.find(',', at) - at - opened.size());
    CHECK(std::stoul(n) > 0);
    CHECK(contains(r.out, "\"legacy\":{\"streams\":" + n + "}"));
}
