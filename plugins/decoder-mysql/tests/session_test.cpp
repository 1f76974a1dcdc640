// SPDX-License-Identifier: Apache-2.0
// decoder-mysql against ground truth: each bundled capture of real MariaDB traffic is
// reassembled by the host's stream layer and decoded; per-command counts, outcomes, error codes
// and rows must equal the truth recorded beside the capture (tests/data/pcap/*.truth.json).
#include "session.hpp"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "aggregate.hpp"
#include "decode_util.hpp"

using mp::mysql::Outcome;
using mp::mysql::Transaction;

namespace {

using mptest::mysql::decode;
using mptest::mysql::outcomeName;
using mptest::mysql::Totals;

std::map<std::string, int64_t> toMap(const Poco::JSON::Object::Ptr& o) {
    std::map<std::string, int64_t> m;
    for (const auto& [k, v] : *o) {
        m[k] = v.convert<int64_t>();
    }
    return m;
}

Poco::JSON::Object::Ptr truth(const std::string& name) {
    std::ifstream in(std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/" + name + ".truth.json");
    std::stringstream ss;
    ss << in.rdbuf();
    Poco::JSON::Parser parser;
    return parser.parse(ss.str()).extract<Poco::JSON::Object::Ptr>()->getObject("wire_truth");
}

void checkAgainstTruth(const std::string& name) {
    CAPTURE(name);
    auto t = truth(name);
    Totals got = decode(std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/" + name + ".pcap", 2);
    CHECK(got.commands == toMap(t->getObject("client_commands_by_type")));
    CHECK(got.outcomes == toMap(t->getObject("responses_by_kind")));
    std::map<std::string, int64_t> errors;
    std::map<std::string, int64_t> loginErrors;
    for (const auto& [k, v] : toMap(t->getObject("errors_by_command_and_code"))) {
        (k.rfind("connect:", 0) == 0 ? loginErrors : errors)[k] = v;
    }
    CHECK(got.errors == errors);
    CHECK(got.loginErrors == loginErrors);
    CHECK(got.rows == t->getValue<int64_t>("rows_returned_total"));
    CHECK(got.lost == 0);
    if (std::getenv("MP_DEBUG_TX") != nullptr) {
        for (const auto& [k, v] : got.outcomes) {
            MESSAGE(k << " " << v);
        }
        for (const auto& tx : got.all) {
            MESSAGE(tx.requestTs << " " << mp::mysql::commandName(tx.command) << " "
                                 << std::string(outcomeName(tx.outcome)) << " rows "
                                 << tx.rowsReturned << " err " << tx.errorCode << " "
                                 << tx.sql.substr(0, 60));
        }
    }
}

}  // namespace

TEST_SUITE("decoder-mysql") {
    TEST_CASE("sysbench text protocol: every command, outcome and row equals the truth") {
        checkAgainstTruth("sysbench_text_rw_2t_20tx");
    }
    TEST_CASE("sysbench prepared statements (MariaDB cache metadata): equals the truth") {
        checkAgainstTruth("sysbench_ps_rw_2t_20tx");
        Totals got = decode(
            std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/sysbench_ps_rw_2t_20tx.pcap", 1);
        // Every execute is resolved to the text of its PREPARE.
        for (const auto& tx : got.all) {
            if (tx.command == mp::mysql::kStmtExecute) {
                CHECK_FALSE(tx.sql.empty());
            }
        }
    }
    TEST_CASE("edge cases (errors, 16 MiB+ packets, compression, TLS, cursors, infile, bulk)") {
        checkAgainstTruth("edge_cases_small");
        Totals got =
            decode(std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/edge_cases_small.pcap", 1);
        CHECK(got.tls == 1);
    }
    TEST_CASE("templates: counts, errors, rows and max latency per fingerprint equal the truth") {
        // Where our grouping differs from the reference decoder's on purpose (README,
        // "Fingerprints"), its template is folded into ours first: the rows of a multi-row
        // VALUES collapse, and function arguments do not.
        const std::map<std::string, std::string> deliberate = {
            {"insertintodupkvalues(?+),(?+)", "insertintodupkvalues(?+)"},
            {"selectrepeat(?+)asbig_compressed", "selectrepeat(?,?)asbig_compressed"},
        };
        auto squeeze = [](std::string k) {
            k.erase(std::remove(k.begin(), k.end(), ' '), k.end());
            return k;
        };
        for (const char* name :
             {"sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx", "edge_cases_small"}) {
            CAPTURE(name);
            Totals got =
                decode(std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/" + name + ".pcap", 2);
            struct T {
                int64_t count = 0, errors = 0, rows = 0;
                uint64_t maxNs = 0;
            };
            std::map<std::string, T> ours;
            for (const auto& tx : got.all) {
                if (tx.command != mp::mysql::kQuery && tx.command != mp::mysql::kStmtExecute) {
                    continue;
                }
                T& t = ours[tx.fingerprint];
                ++t.count;
                t.errors += tx.outcome == Outcome::Error ? 1 : 0;
                t.rows += static_cast<int64_t>(tx.rowsReturned);
                t.maxNs = std::max(t.maxNs, tx.responseTs - tx.requestTs);
            }
            // Our text spaces operators ("id = ?"); the reference writes them as sysbench
            // does ("id=?"). Same grouping: compare with spaces removed.
            struct Expected {
                int64_t count = 0, errors = 0, rows = 0;
                double maxUs = 0;
            };
            std::map<std::string, Expected> expected;
            auto templates = truth(name)->getArray("templates");
            for (size_t i = 0; i < templates->size(); ++i) {
                auto tt = templates->getObject(static_cast<unsigned>(i));
                std::string key = squeeze(tt->getValue<std::string>("fingerprint"));
                if (auto d = deliberate.find(key); d != deliberate.end()) {
                    key = d->second;
                }
                Expected& e = expected[key];
                e.count += tt->getValue<int64_t>("count");
                e.errors += tt->getValue<int64_t>("errors");
                e.rows += tt->getValue<int64_t>("rows");
                e.maxUs = std::max(e.maxUs, tt->getValue<double>("lat_us_max"));
            }
            std::map<std::string, T> squeezed;
            for (const auto& [fp, t] : ours) {
                T& q = squeezed[squeeze(fp)];
                q.count += t.count;
                q.errors += t.errors;
                q.rows += t.rows;
                q.maxNs = std::max(q.maxNs, t.maxNs);
            }
            CHECK(squeezed.size() == expected.size());
            for (const auto& [key, e] : expected) {
                CAPTURE(key);
                auto it = squeezed.find(key);
                REQUIRE(it != squeezed.end());
                const T& match = it->second;
                CHECK(match.count == e.count);
                CHECK(match.errors == e.errors);
                CHECK(match.rows == e.rows);
                // The reference computed latencies from float seconds and rounds to 0.1 us.
                CHECK(std::abs(static_cast<double>(match.maxNs) / 1000.0 - e.maxUs) <= 0.5);
            }
            for (const auto& [key, t] : squeezed) {
                CAPTURE(key);
                CHECK(expected.count(key) == 1);
            }
        }
    }

    TEST_CASE("aggregated percentiles are within the sketch's 1% of the truth") {
        for (const char* name : {"sysbench_text_rw_2t_20tx", "sysbench_ps_rw_2t_20tx"}) {
            CAPTURE(name);
            Totals got =
                decode(std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/" + name + ".pcap", 4);
            // Four workers' aggregates merged, as worker 0 does at the end of an interval.
            std::vector<mp::mysql::Aggregator> perWorker(4);
            for (size_t i = 0; i < got.all.size(); ++i) {
                perWorker[i % 4].add(got.all[i], "127.0.0.1:3306");
            }
            mp::mysql::Aggregator all;
            for (auto& a : perWorker) {
                all.merge(a);
            }
            auto templates = truth(name)->getArray("templates");
            REQUIRE(all.templateCount() == templates->size());
            for (size_t i = 0; i < templates->size(); ++i) {
                auto tt = templates->getObject(static_cast<unsigned>(i));
                std::string key = tt->getValue<std::string>("fingerprint");
                key.erase(std::remove(key.begin(), key.end(), ' '), key.end());
                const mp::mysql::TemplateStats* match = nullptr;
                all.forEachTemplate([&](const mp::mysql::TemplateStats& t) {
                    std::string f = t.fingerprint;
                    f.erase(std::remove(f.begin(), f.end(), ' '), f.end());
                    if (f == key) {
                        match = &t;
                    }
                });
                CAPTURE(key);
                REQUIRE(match != nullptr);
                CHECK(match->count == tt->getValue<uint64_t>("count"));
                for (auto qf : {std::pair<double, const char*>{0.5, "lat_us_p50"},
                                {0.95, "lat_us_p95"},
                                {0.99, "lat_us_p99"},
                                {1.0, "lat_us_max"}}) {
                    double q = qf.first;
                    const char* field = qf.second;  // a plain variable: CAPTURE takes it
                    double want = tt->getValue<double>(field);
                    double have = match->latency.quantile(q);
                    CAPTURE(field);
                    // 1% from the sketch, plus the reference's rounding to 0.1 us.
                    CHECK(std::abs(have - want) <= 0.01 * want + 0.2);
                }
            }
        }
    }

    TEST_CASE("sketches merge exactly: merged quantiles equal the quantiles of the union") {
        mp::mysql::LatencySketch a;
        mp::mysql::LatencySketch b;
        mp::mysql::LatencySketch u;
        for (int i = 1; i <= 1000; ++i) {
            double v = 10.0 * i * (i % 7 + 1);
            (i % 3 == 0 ? a : b).add(v);
            u.add(v);
        }
        a.merge(b);
        for (double q : {0.5, 0.9, 0.95, 0.99, 0.999, 1.0}) {
            CHECK(a.quantile(q) == u.quantile(q));
        }
        CHECK(a.count() == 1000);
        CHECK(a.max() == u.max());
    }

    TEST_CASE("results do not depend on the number of workers") {
        for (const char* name : {"sysbench_text_rw_2t_20tx", "edge_cases_small"}) {
            std::string f = std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/" + name + ".pcap";
            Totals one = decode(f, 1);
            Totals four = decode(f, 4);
            Totals inlined = decode(f, 1, true);  // the capture thread does the worker's work
            CHECK(one.commands == four.commands);
            CHECK(one.outcomes == four.outcomes);
            CHECK(one.rows == four.rows);
            CHECK(one.commands == inlined.commands);
            CHECK(one.outcomes == inlined.outcomes);
            CHECK(one.rows == inlined.rows);
            CHECK(one.all.size() == inlined.all.size());
        }
    }

    TEST_CASE("per-client and per-user breakdowns add up to the template, bounded, merged") {
        std::string f =
            std::string(MP_TEST_SOURCE_DIR) + "/tests/data/pcap/sysbench_text_rw_2t_20tx.pcap";
        Totals got = decode(f, 1);
        REQUIRE(!got.all.empty());
        // 100 client addresses over two aggregators (two workers), merged.
        mp::mysql::Aggregator a;
        mp::mysql::Aggregator b;
        std::map<std::string, uint64_t> perClient;
        for (size_t i = 0; i < got.all.size(); ++i) {
            std::string client = "10.0.0." + std::to_string(i % 100);
            (i % 2 == 0 ? a : b).add(got.all[i], "127.0.0.1:3306", client);
        }
        a.merge(b);
        size_t templates = 0;
        a.forEachTemplate([&](const mp::mysql::TemplateStats& t) {
            ++templates;
            uint64_t clients = t.clients.other.count;
            for (const auto& [addr, c] : t.clients.named) {
                clients += c.count;
                CHECK(c.errors <= c.count);
            }
            CHECK(clients == t.count);
            CHECK(t.clients.named.size() <= mp::mysql::TemplateStats::kMaxClients);
            uint64_t users = t.users.other.count;
            for (const auto& [user, u] : t.users.named) {
                CHECK(user == "sbtest");  // sysbench's login
                users += u.count;
                CHECK(u.latencySumUs == doctest::Approx(t.latency.sum()).epsilon(1e-9));
            }
            CHECK(users == t.count);
            CHECK(t.users.other.count == 0);
        });
        CHECK(templates == 38);
        // The JSON carries them: clients[] with addr (or other) and users[] with user.
        Poco::JSON::Parser parser;
        auto root = parser.parse("{" + a.json() + "}").extract<Poco::JSON::Object::Ptr>();
        auto list = root->getArray("templates");
        REQUIRE(list->size() == 38);
        uint64_t total = 0;
        for (size_t i = 0; i < list->size(); ++i) {
            auto t = list->getObject(static_cast<unsigned>(i));
            uint64_t sum = 0;
            auto clients = t->getArray("clients");
            for (size_t k = 0; k < clients->size(); ++k) {
                auto c = clients->getObject(static_cast<unsigned>(k));
                CHECK((c->has("addr") || c->has("other")));
                sum += c->getValue<uint64_t>("count");
            }
            CHECK(sum == t->getValue<uint64_t>("count"));
            CHECK(t->getArray("users")->size() == 1);
            total += sum;
        }
        CHECK(total > 0);
    }
}

TEST_SUITE("report model") {
    TEST_CASE("breakdown sets: names found by their index, bounded, copies keep working") {
        mp::report::BreakdownSet<64> set;
        // 1,000 client names, each seen 3 times in a round: the first 64 are named, the rest
        // are summed under `other`.
        for (int round = 0; round < 3; ++round) {
            for (int c = 0; c < 1000; ++c) {
                ++set.at("10.0." + std::to_string(c / 256) + "." + std::to_string(c % 256)).count;
            }
        }
        REQUIRE(set.named.size() == 64);
        for (size_t i = 0; i < set.named.size(); ++i) {
            CAPTURE(i);
            CHECK(set.named[i].first ==
                  "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
            CHECK(set.named[i].second.count == 3);
        }
        CHECK(set.other.count == 3 * (1000 - 64));
        // A copy finds its own entries; a merge adds name by name.
        mp::report::BreakdownSet<64> copy = set;
        ++copy.at("10.0.0.5").count;
        CHECK(copy.named[5].second.count == 4);
        CHECK(set.named[5].second.count == 3);
        mp::report::BreakdownSet<64> merged;
        ++merged.at("10.0.0.7").count;
        merged.merge(set);
        CHECK(merged.named.size() == 64);
        CHECK(merged.named[0].first == "10.0.0.7");
        CHECK(merged.named[0].second.count == 4);
        CHECK(merged.other.count == set.other.count);  // 10.0.0.7 was one of the 64 already
    }
}
