// SPDX-License-Identifier: Apache-2.0
// The mysqlprobe binary, run for real: command line, configuration errors, start, HTTP,
// signal shutdown in reverse start order, offline reading of a bundled capture.
#include <Poco/JSON/Object.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <map>
#include <mp/report.hpp>
#include <set>

#include "fingerprint.hpp"
#include "support/node.hpp"

using namespace std::chrono_literals;
using mptest::Process;

namespace {

using mptest::config;
using mptest::data;
using mptest::httpGet;
using mptest::loggedPort;
using mptest::parseJson;

// Position of `needle` in `hay`, or npos; for ordering checks on the log.
size_t at(const std::string& hay, const std::string& needle) { return hay.find(needle); }

}  // namespace

TEST_SUITE("process") {
    TEST_CASE("--version, --help, and usage errors") {
        Process v({mptest::binary(), "--version"});
        CHECK(mptest::run(v) == 0);
        CHECK(v.out().find("mysqlprobe 0.9.0 (plugin ABI 1.7)") == 0);
        Process h({mptest::binary(), "--help"});
        CHECK(mptest::run(h) == 0);
        CHECK(h.out().find("--list-plugins") != std::string::npos);
        Process none({mptest::binary()});
        CHECK(mptest::run(none) == 2);
        CHECK(none.err().find("nothing to do") != std::string::npos);
        Process bad({mptest::binary(), "--frobnicate"});
        CHECK(mptest::run(bad) == 2);
        CHECK(bad.err().find("frobnicate") != std::string::npos);
        Process extra({mptest::binary(), "-c", "x.yaml", "stray"});
        CHECK(mptest::run(extra) == 2);
        CHECK(extra.err().find("unexpected argument 'stray'") != std::string::npos);
    }

    TEST_CASE("--list-plugins lists the seven built-in plugins with their properties") {
        Process p({mptest::binary(), "--list-plugins"});
        REQUIRE(mptest::run(p) == 0);
        std::string out = p.out();
        for (const char* line :
             {"capture-pcap  capture  0.1.0  ABI 1.7", "decoder-mysql  decoder  0.4.0  ABI 1.7",
              "cluster-static  cluster  0.1.0  ABI 1.7", "cluster-gossip  cluster  0.3.0  ABI 1.7",
              "sink-websocket  sink  0.1.0  ABI 1.7", "sink-amqp  sink  0.2.0  ABI 1.7",
              "source-amqp  source  0.1.0  ABI 1.7", "console-web  sink  0.1.0  ABI 1.7"}) {
            CHECK_MESSAGE(out.find(line) != std::string::npos, line);
        }
        CHECK(out.find("snaplen                int    default \"0\" [0..262144]") !=
              std::string::npos);
        // Naming the built-in directory again reads it once, not twice.
        Process again({mptest::binary(), "--list-plugins", "--plugin-dir", MP_TEST_PLUGIN_DIR,
                       "--plugin-dir", std::string(MP_TEST_PLUGIN_DIR) + "/."});
        CHECK_MESSAGE(mptest::run(again) == 0, again.err());
        CHECK(again.out() == out);
    }

    TEST_CASE("--check accepts the original probe's files and refuses bad ones") {
        // --check makes every plugin instance (as a start would) and destroys it unstarted:
        // the original's README example names macOS devices, which a start here refuses.
        Process mac({mptest::binary(), "--check", "-c", data("config/original-probe.yaml")});
        CHECK(mptest::run(mac) == 2);
        CHECK(mac.err().find("cannot capture on lo0") != std::string::npos);
        if (::geteuid() == 0) {  // opening a device needs capture privileges
            Process p({mptest::binary(), "--check", "-c", data("config/original-full.yaml")});
            CHECK_MESSAGE(mptest::run(p) == 0, p.err());
            CHECK(p.out().find(": OK (") != std::string::npos);
        }
        // What fails at start fails the check: a missing capture file, a bad server address.
        Process noFile({mptest::binary(), "--check", "-c",
                        config("missing", "probe:\n  file: /nonexistent/x.pcap\n")});
        CHECK(mptest::run(noFile) == 2);
        CHECK(noFile.err().find("/nonexistent/x.pcap") != std::string::npos);
        Process addr(
            {mptest::binary(), "--check", "-c", config("addr", "serveraddress: not-an-address\n")});
        CHECK(mptest::run(addr) == 2);
        CHECK(addr.err().find("serveraddress") != std::string::npos);
        if (::geteuid() == 0) {  // the example captures on lo
            Process ex({mptest::binary(), "--check", "-c",
                        mptest::sourceDir() + "/examples/mysqlprobe.yaml"});
            CHECK_MESSAGE(mptest::run(ex) == 0, ex.err());
        }
        std::string bad = config("bad", "serverport: 8667\nprobe:\n  port: x3306\n  workers: 99\n");
        Process p({mptest::binary(), "--check", "--config", bad});
        CHECK(mptest::run(p) == 2);
        CHECK(p.err() ==
              "mysqlprobe: " + bad + ":4: probe.workers: value 99 is out of range [1, 64]\n");
        Process missing({mptest::binary(), "--check", "-c", "/nonexistent.yaml"});
        CHECK(mptest::run(missing) == 2);
        CHECK(missing.err() ==
              "mysqlprobe: /nonexistent.yaml: cannot open the configuration file\n");
    }

    TEST_CASE("a node starts all plugins, serves /health, and stops on SIGTERM in reverse order") {
        std::string cfg = config("run",
                                 "serverport: 0\nserveraddress: 127.0.0.1\ninterval: 1\n"
                                 "loglevel: debug\nslave: true\n"
                                 "probe:\n  file: " +
                                     data("pcap/sysbench_text_rw_2t_20tx.pcap") +
                                     "\n  loop: true\n"
                                     "plugins:\n  capture:\n    plugin: capture-pcap\n"
                                     "    config: {speed: 1}\n");
        Process p({mptest::binary(), "-c", cfg});
        // The server answers as soon as it listens; the plugins have all started once the host
        // says it is running (until then their routes answer 503).
        REQUIRE(mptest::eventually([&] {
            return loggedPort(p) != 0 && p.err().find("host: running") != std::string::npos;
        }));
        int port = loggedPort(p);
        std::string body;
        REQUIRE(httpGet(port, "/health", body) == 200);
        auto health = parseJson(body);
        auto plugins = health->getArray("plugins");
        REQUIRE(plugins->size() == 5);
        std::set<std::string> names;
        for (size_t i = 0; i < plugins->size(); ++i) {
            names.insert(
                plugins->getObject(static_cast<unsigned>(i))->getValue<std::string>("name"));
            CHECK(plugins->getObject(static_cast<unsigned>(i))->getValue<bool>("running"));
        }
        CHECK(names == std::set<std::string>{"capture-pcap", "decoder-mysql", "cluster-static",
                                             "sink-websocket", "console-web"});
        // The default console: its page at / (anyone), its data for the read role.
        REQUIRE(httpGet(port, "/", body) == 200);
        CHECK(body.find("<title>mysqlprobe console</title>") != std::string::npos);
        CHECK(httpGet(port, "/missing", body) == 404);
        // Frames flow from the capture plugin through the stream layer to the decoder.
        REQUIRE(mptest::eventually([&] {
            return httpGet(port, "/metrics", body) == 200 &&
                   body.find("\nmysqlprobe_stream_delivered_bytes_total ") != std::string::npos &&
                   body.find("\nmysqlprobe_stream_delivered_bytes_total 0\n") ==
                       std::string::npos &&
                   body.find("\nmysqlprobe_decoder_mysql_bytes_total 0\n") == std::string::npos;
        }));
        auto t0 = std::chrono::steady_clock::now();
        p.signal(SIGTERM);
        REQUIRE(p.wait(6s));
        CHECK(std::chrono::steady_clock::now() - t0 < 5s);
        CHECK(p.exitCode() == 0);
        std::string log = p.err();
        CHECK(log.find("stopping: signal") != std::string::npos);
        // Started downstream first, stopped upstream first.
        CHECK(at(log, "started sinks[0]") < at(log, "started cluster"));
        CHECK(at(log, "started cluster") < at(log, "started decoder"));
        CHECK(at(log, "started decoder") < at(log, "started capture"));
        CHECK(at(log, "stopped capture") < at(log, "stopped decoder"));
        CHECK(at(log, "stopped decoder") < at(log, "stopped cluster"));
        CHECK(at(log, "stopped cluster") < at(log, "stopped sinks[0]"));
        CHECK(at(log, "stopped sinks[0]") != std::string::npos);
        CHECK(log.find("host: stopped") != std::string::npos);
    }

    TEST_CASE("SIGINT stops a node too") {
        std::string cfg = config("sigint", "serverport: 0\nserveraddress: 127.0.0.1\n");
        Process p({mptest::binary(), "-c", cfg});
        REQUIRE(mptest::eventually([&] { return loggedPort(p) != 0; }));
        p.signal(SIGINT);
        REQUIRE(p.wait(6s));
        CHECK(p.exitCode() == 0);
        CHECK(p.err().find("stopping: signal Interrupt") != std::string::npos);
    }

    TEST_CASE("a port already in use is one clear line and exit 2") {
        std::string cfg = config("port", "serverport: 0\nserveraddress: 127.0.0.1\n");
        Process first({mptest::binary(), "-c", cfg});
        REQUIRE(mptest::eventually([&] { return loggedPort(first) != 0; }));
        int port = loggedPort(first);
        Process second({mptest::binary(), "-c", cfg, "--serverport", std::to_string(port)});
        CHECK(mptest::run(second) == 2);
        CHECK(second.err().find("cannot listen on 127.0.0.1:" + std::to_string(port)) !=
              std::string::npos);
        first.signal(SIGTERM);
        CHECK(first.wait(6s));
    }

    TEST_CASE("offline: -r reads a bundled capture and prints the final report") {
        Process p({mptest::binary(), "-r", data("pcap/sysbench_text_rw_2t_20tx.pcap")});
        REQUIRE(mptest::run(p) == 0);
        auto report = parseJson(p.out());
        CHECK(report->getValue<bool>("final"));
        auto stats = report->getObject("stats");
        auto capture = report->getObject("capture");
        // The README of the captures: 826 packets, 2 connections, all on port 3306; the
        // decoder receives every payload byte (tshark: sum of tcp.len = 816746).
        CHECK(stats->getValue<int64_t>("capture_pcap_packets_total") == 826);
        CHECK(capture->getValue<int64_t>("packets") == 826);
        CHECK(capture->getValue<int64_t>("tcp_segments") == 826);
        CHECK(capture->getValue<int64_t>("stream_bytes") == 816746);
        CHECK(capture->getValue<int64_t>("gap_bytes") == 0);
        CHECK(capture->getObject("connections")->getValue<int64_t>("opened") == 2);
        CHECK(capture->getObject("connections")->getValue<int64_t>("closed_fin") == 2);
        CHECK(stats->getValue<int64_t>("decoder_mysql_bytes_total") == 816746);
        CHECK(stats->getValue<int64_t>("decoder_mysql_streams_total") == 2);
        // The decoder's section: the truth of this capture is 400 COM_QUERY + 2 COM_QUIT,
        // 6220 rows, 38 templates, no errors.
        auto totals = report->getObject("totals");
        REQUIRE(totals);
        CHECK(totals->getObject("commands")->getValue<int64_t>("COM_QUERY") == 400);
        CHECK(totals->getObject("commands")->getValue<int64_t>("COM_QUIT") == 2);
        CHECK(totals->getValue<int64_t>("errors") == 0);
        CHECK(totals->getValue<int64_t>("rows_returned") == 6220);
        auto templates = report->getArray("templates");
        REQUIRE(templates);
        CHECK(templates->size() == 38);
        int64_t sum = 0;
        for (size_t i = 0; i < templates->size(); ++i) {
            auto t = templates->getObject(static_cast<unsigned>(i));
            sum += t->getValue<int64_t>("count");
            CHECK(t->getValue<std::string>("id").size() == 16);
            CHECK(t->getValue<std::string>("server") == "127.0.0.1:3306");
            CHECK(t->getValue<std::string>("schema") == "sbtest");
            auto l = t->getObject("latency_us");
            CHECK(l->getValue<double>("p50") <= l->getValue<double>("p99"));
            CHECK(l->getValue<double>("p99") <= l->getValue<double>("max"));
        }
        CHECK(sum == 400);
        // The same as a table.
        Process table({mptest::binary(), "-r", data("pcap/sysbench_text_rw_2t_20tx.pcap"),
                       "--format", "table"});
        REQUIRE(mptest::run(table) == 0);
        CHECK(table.out().find("commands: COM_QUERY=400 COM_QUIT=2") != std::string::npos);
        CHECK(table.out().find("select c from sbtest") != std::string::npos);
        // With no --format: a table on a terminal (script(1) gives it one), JSON into a file
        // (the JSON above was read from a file).
        Process tty({"/usr/bin/script", "-qec",
                     mptest::binary() + " -r " + data("pcap/sysbench_text_rw_2t_20tx.pcap"),
                     "/dev/null"});
        REQUIRE(mptest::run(tty) == 0);
        CHECK(tty.out().find("commands: COM_QUERY=400 COM_QUIT=2") != std::string::npos);
        CHECK(tty.out().find("\"templates\"") == std::string::npos);
        Process bad({mptest::binary(), "-r", data("pcap/sysbench_text_rw_2t_20tx.pcap"), "--format",
                     "xml"});
        CHECK(mptest::run(bad) == 2);
        CHECK(bad.err().find("--format takes table, json or auto, not 'xml'") != std::string::npos);
        Process other(
            {mptest::binary(), "-r", data("pcap/sysbench_text_rw_2t_20tx.pcap"), "--port", "3307"});
        REQUIRE(mptest::run(other) == 0);
        // Files skip BPF for the port test: the host sees every packet and skips them itself.
        auto o = parseJson(other.out());
        CHECK(o->getObject("capture")->getValue<int64_t>("not_server_port") == 826);
        CHECK(o->getObject("capture")->getValue<int64_t>("stream_bytes") == 0);
        CHECK(o->getObject("totals")->getValue<int64_t>("commands_total") == 0);
        CHECK(o->getArray("templates")->size() == 0);
        // An extra BPF expression still applies to mapped files: server-to-client only.
        std::string srcOnly = config("src-only",
                                     "serverport: 0\nprobe:\n  filter: 'src port 3306'\n"
                                     "plugins: {cluster: none, sinks: []}\n");
        Process filtered(
            {mptest::binary(), "-c", srcOnly, "-r", data("pcap/sysbench_text_rw_2t_20tx.pcap")});
        REQUIRE(mptest::run(filtered) == 0);
        auto fo = parseJson(filtered.out());
        CHECK(fo->getObject("capture")->getValue<int64_t>("packets") == 411);
        CHECK(fo->getObject("totals")->getValue<int64_t>("commands_total") == 0);
    }

    TEST_CASE("offline: the decoder's bounds hold and what they leave out is counted") {
        // The prepared capture: 400 executes of 38 statements on 2 connections.
        std::string file = data("pcap/sysbench_ps_rw_2t_20tx.pcap");
        auto run = [&](const std::string& name, const std::string& decoder) {
            std::string cfg = config(name,
                                     "serverport: 0\nplugins:\n  cluster: none\n"
                                     "  sinks: []\n  decoder: {plugin: decoder-mysql, "
                                     "config: {" +
                                         decoder + "}}\n");
            Process p({mptest::binary(), "-c", cfg, "-r", file});
            REQUIRE(mptest::run(p) == 0);
            return parseJson(p.out());
        };
        auto counted = [](const Poco::JSON::Object::Ptr& report) {
            int64_t sum = 0;
            auto templates = report->getArray("templates");
            for (size_t i = 0; i < templates->size(); ++i) {
                sum += templates->getObject(static_cast<unsigned>(i))->getValue<int64_t>("count");
            }
            return sum;
        };
        // One statement remembered per connection: the others' executes have no text.
        auto one = run("one-statement", "max_statements_per_connection: 1");
        auto totals = one->getObject("totals");
        auto stats = one->getObject("stats");
        int64_t unresolved = totals->getValue<int64_t>("unresolved_executes");
        CHECK(unresolved > 0);
        CHECK(counted(one) + unresolved == 400);
        CHECK(stats->getValue<int64_t>("decoder_mysql_unknown_statements_total") == unresolved);
        CHECK(stats->getValue<int64_t>("decoder_mysql_statements_evicted_total") == 74);  // 2 x 37
        CHECK(one->getArray("templates")->size() <= 2);
        // Five templates: the other executions are counted as evicted.
        auto five = run("five-templates", "max_templates: 5");
        CHECK(five->getArray("templates")->size() == 5);
        CHECK(five->getObject("totals")->getValue<int64_t>("unresolved_executes") == 0);
        CHECK(counted(five) + five->getObject("totals")->getValue<int64_t>("templates_evicted") ==
              400);
        // Samples (parameters substituted) and slow samples stay within max_sql_length.
        auto small = run("short-sql", "max_sql_length: 16, slow_threshold_ms: 0");
        auto templates = small->getArray("templates");
        REQUIRE(templates->size() == 38);
        size_t slow = 0;
        for (size_t i = 0; i < templates->size(); ++i) {
            auto t = templates->getObject(static_cast<unsigned>(i));
            CHECK(t->getValue<std::string>("sample").size() <= 16);
            auto list = t->getArray("slow");
            for (size_t k = 0; list && k < list->size(); ++k, ++slow) {
                auto x = list->getObject(static_cast<unsigned>(k));
                CHECK(x->getValue<std::string>("sql").size() <= 16);
                // Which connection: the server's thread ids of the capture (its general log).
                int64_t conn = x->getValue<int64_t>("conn_id");
                CHECK((conn == 56 || conn == 57));
                CHECK(x->getValue<int64_t>("client_port") > 1024);
            }
        }
        CHECK(slow > 0);
        // The table says what is in no template.
        std::string cfg = config("one-statement-table",
                                 "serverport: 0\nplugins:\n  cluster: none\n  sinks: []\n"
                                 "  decoder: {plugin: decoder-mysql, config: "
                                 "{max_statements_per_connection: 1}}\n");
        Process table({mptest::binary(), "-c", cfg, "-r", file, "--format", "table"});
        REQUIRE(mptest::run(table) == 0);
        CHECK(table.out().find("executes of unknown statements: " + std::to_string(unresolved)) !=
              std::string::npos);
    }

    TEST_CASE("offline: samples raw, masked or none; the templates are the same") {
        auto run = [&](const std::string& capture, const std::string& samples) {
            std::string cfg = config("samples-" + samples,
                                     "serverport: 0\nplugins:\n  cluster: none\n"
                                     "  sinks: []\n  decoder: {plugin: decoder-mysql, "
                                     "config: {slow_threshold_ms: 0, samples: " +
                                         samples + "}}\n");
            Process p({mptest::binary(), "-c", cfg, "-r", data("pcap/" + capture)});
            REQUIRE(mptest::run(p) == 0);
            auto templates = parseJson(p.out())->getArray("templates");
            std::map<std::string, Poco::JSON::Object::Ptr> byId;
            for (size_t i = 0; i < templates->size(); ++i) {
                auto t = templates->getObject(static_cast<unsigned>(i));
                byId[t->getValue<std::string>("id")] = t;
            }
            return byId;
        };
        auto checkMasked = [](const std::string& msg) {
            for (size_t q = msg.find('\''); q != std::string::npos; q = msg.find('\'', q + 3)) {
                CHECK(msg.compare(q, 3, "'?'") == 0);  // every quoted value masked
            }
        };
        for (const std::string capture : {"sysbench_text_rw_2t_20tx.pcap",
                                          "sysbench_ps_rw_2t_20tx.pcap", "edge_cases_small.pcap"}) {
            CAPTURE(capture);
            auto raw = run(capture, "raw");
            auto masked = run(capture, "masked");
            auto none = run(capture, "none");
            REQUIRE(raw.size() == masked.size());
            REQUIRE(raw.size() == none.size());
            size_t withDigits = 0;
            size_t messages = 0;
            for (const auto& [id, r] : raw) {
                REQUIRE(masked.count(id) == 1);
                auto m = masked.at(id);
                auto n = none.at(id);
                CHECK(m->getValue<int64_t>("count") == r->getValue<int64_t>("count"));
                const std::string rawSample = r->getValue<std::string>("sample");
                const std::string maskedSample = m->getValue<std::string>("sample");
                // the masked sample is the statement as it was sent with its literals masked
                // (a prepared statement's: its text with ?, no parameters): its template is
                // the template's
                if (maskedSample.size() < 3 ||
                    maskedSample.compare(maskedSample.size() - 3, 3, "...") != 0) {
                    CHECK(mp::report::hex64(mp::mysql::fingerprint(maskedSample).id) == id);
                }
                CHECK(mp::mysql::maskLiterals(maskedSample) == maskedSample);
                withDigits += rawSample.find_first_of("0123456789") != std::string::npos ? 1 : 0;
                CHECK(n->getValue<std::string>("sample").empty());
                for (const auto& [t, tag] : {std::pair{m, "masked"}, std::pair{n, "none"}}) {
                    auto slow = t->getArray("slow");
                    for (size_t k = 0; slow && k < slow->size(); ++k) {
                        auto x = slow->getObject(static_cast<unsigned>(k));
                        const std::string sql = x->getValue<std::string>("sql");
                        if (std::string(tag) == "none") {
                            CHECK(sql.empty());
                        } else {  // another execution of the template, masked
                            CHECK(mp::mysql::maskLiterals(sql) == sql);
                            if (sql.size() < 3 || sql.compare(sql.size() - 3, 3, "...") != 0) {
                                CHECK(mp::report::hex64(mp::mysql::fingerprint(sql).id) == id);
                            }
                        }
                        checkMasked(x->getValue<std::string>("error_message"));
                    }
                    auto details = t->getObject("error_details");
                    for (const auto& code : details->getNames()) {
                        ++messages;
                        checkMasked(details->getObject(code)->getValue<std::string>("message"));
                    }
                }
            }
            CHECK(withDigits > 0);  // the captures do carry literals
            if (capture == "edge_cases_small.pcap") {
                CHECK(messages > 0);
            }
        }
    }

    TEST_CASE("offline: pcapng goes through libpcap, other ports with --port") {
        // Zeek's capture: 27 packets (tshark), one MySQL 8 session on 3306.
        Process ng({mptest::binary(), "-r",
                    data("third-party/zeek/testing/btest/Traces/mysql/"
                         "caching_sha2_password-after-auth-switch.pcapng")});
        REQUIRE(mptest::run(ng) == 0);
        auto c = parseJson(ng.out())->getObject("capture");
        CHECK(c->getValue<int64_t>("packets") == 27);
        CHECK(c->getValue<int64_t>("tcp_segments") == 27);
        CHECK(c->getObject("connections")->getValue<int64_t>("opened") == 1);
        CHECK(c->getValue<int64_t>("gap_bytes") == 0);
        // Packetbeat's capture of a server on port 13001.
        std::string pb =
            data("third-party/packetbeat/tests/pcaps/mysql_int_string_operations.pcap");
        Process wrong({mptest::binary(), "-r", pb});
        REQUIRE(mptest::run(wrong) == 0);
        auto wc = parseJson(wrong.out())->getObject("capture");
        CHECK(wc->getValue<int64_t>("not_server_port") == wc->getValue<int64_t>("tcp_segments"));
        CHECK(wc->getValue<int64_t>("stream_bytes") == 0);
        Process right({mptest::binary(), "-r", pb, "--port", "3306,13001"});
        REQUIRE(mptest::run(right) == 0);
        auto rc = parseJson(right.out())->getObject("capture");
        CHECK(rc->getValue<int64_t>("packets") > 0);
        CHECK(rc->getValue<int64_t>("not_server_port") == 0);
        CHECK(rc->getValue<int64_t>("stream_bytes") > 0);
    }

    TEST_CASE("capture errors: missing file, truncated file, bad device, bad filter") {
        Process missing({mptest::binary(), "-r", "/nonexistent.pcap"});
        CHECK(mptest::run(missing) == 2);
        CHECK(missing.err().find("cannot read /nonexistent.pcap") != std::string::npos);

        std::string whole = mptest::readFile(data("pcap/sysbench_text_rw_2t_20tx.pcap"));
        std::string cut = mptest::tempDir("cut") + "/cut.pcap";
        mptest::writeFile(cut, whole.substr(0, whole.size() / 2 + 7));
        Process trunc({mptest::binary(), "-r", cut});
        CHECK(mptest::run(trunc) == 0);
        int64_t packets = parseJson(trunc.out())
                              ->getObject("stats")
                              ->getValue<int64_t>("capture_pcap_packets_total");
        CHECK(packets > 0);
        CHECK(packets < 826);
        CHECK(trunc.err().find("read error after") != std::string::npos);

        std::string notPcap = mptest::tempDir("notpcap") + "/x.pcap";
        mptest::writeFile(notPcap, "this is not a capture file at all\n");
        Process garbage({mptest::binary(), "-r", notPcap});
        CHECK(mptest::run(garbage) == 2);
        CHECK(garbage.err().find("cannot read " + notPcap) != std::string::npos);

        std::string dev = config("dev",
                                 "serverport: 0\nserveraddress: 127.0.0.1\nslave: true\n"
                                 "probe:\n  device: nosuchdev0\n");
        Process badDev({mptest::binary(), "-c", dev});
        CHECK(mptest::run(badDev) == 2);
        CHECK(badDev.err().find("cannot capture on nosuchdev0") != std::string::npos);

        std::string filt = config(
            "filter", "probe:\n  file: " + data("pcap/sysbench_text_rw_2t_20tx.pcap") +
                          "\n  filter: 'tcp and ((('\nplugins: {cluster: none, sinks: []}\n");
        Process badFilter({mptest::binary(), "-c", filt});
        CHECK(mptest::run(badFilter) == 2);
        CHECK(badFilter.err().find("bad filter") != std::string::npos);
    }
}
