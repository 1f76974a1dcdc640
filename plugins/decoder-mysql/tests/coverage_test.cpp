// SPDX-License-Identifier: Apache-2.0
// The coverage account: statement kinds from fingerprints, what Questions counts, the watcher's
// own reading subtracted, new baselines after a failed reading or a server restart.
#include "coverage.hpp"

#include <doctest/doctest.h>

#include <mp/mysql_wire.hpp>
#include <string>

using mp::mysql::CoverageAccount;
using mp::mysql::Seen;
using mp::mysql::StatementKind;
using mp::mysql::statementKind;
using mp::mysql::StatusCounters;
using mp::mysql::Transaction;

namespace {

Transaction tx(uint8_t command, std::string fingerprint = {}) {
    Transaction t;
    t.command = command;
    t.fingerprint = std::move(fingerprint);
    return t;
}

uint64_t figure(const CoverageAccount::Figures& f, const std::string& key, bool seen) {
    for (const auto& [k, v] : f) {
        if (k == key) {
            return seen ? v.seen : v.counted;
        }
    }
    FAIL("no figure " << key);
    return 0;
}

}  // namespace

TEST_CASE("coverage: statement kinds from fingerprints") {
    CHECK(statementKind("select c from t where id = ?") == StatementKind::Select);
    CHECK(statementKind("(select a from t) union (select b from u)") == StatementKind::Select);
    CHECK(statementKind("with x as (select ?) select * from x") == StatementKind::Select);
    CHECK(statementKind("insert into t values(?+)") == StatementKind::Insert);
    CHECK(statementKind("update t set k = k + ? where id = ?") == StatementKind::Update);
    CHECK(statementKind("delete from t where id = ?") == StatementKind::Delete);
    CHECK(statementKind("replace into t values(?+)") == StatementKind::Replace);
    CHECK(statementKind("begin") == StatementKind::Begin);
    CHECK(statementKind("start transaction") == StatementKind::Begin);
    CHECK(statementKind("start slave") == StatementKind::Other);
    CHECK(statementKind("commit") == StatementKind::Commit);
    CHECK(statementKind("rollback") == StatementKind::Rollback);
    CHECK(statementKind("rollback work") == StatementKind::Rollback);
    CHECK(statementKind("rollback to savepoint a") == StatementKind::Other);
    CHECK(statementKind("rollback work to a") == StatementKind::Other);
    CHECK(statementKind("set names utf8mb4") == StatementKind::Other);
    CHECK(statementKind("selector") == StatementKind::Other);
    CHECK(statementKind("") == StatementKind::Other);
}

TEST_CASE("coverage: what the server's Questions counts") {
    Seen s;
    s.add(tx(mp::mysql::kQuery, "select ?"));
    s.add(tx(mp::mysql::kQuery));  // an empty COM_QUERY: a question, no statement
    s.add(tx(mp::mysql::kStmtPrepare, "select ?"));
    s.add(tx(mp::mysql::kStmtExecute, "select ?"));
    s.add(tx(mp::mysql::kStmtExecute));  // text unknown
    s.add(tx(mp::mysql::kStmtClose));
    s.add(tx(mp::mysql::kStmtReset));
    s.add(tx(mp::mysql::kPing));
    s.add(tx(mp::mysql::kStatistics));
    s.add(tx(mp::mysql::kInitDb));
    s.add(tx(mp::mysql::kQuit));
    // QUERY x2, EXECUTE x2, INIT_DB, QUIT; not PREPARE, CLOSE, RESET, PING, STATISTICS.
    CHECK(s.questions() == 6);
    CHECK(s.kinds[unsigned(StatementKind::Select)] == 2);
    CHECK(s.kinds[unsigned(StatementKind::Unknown)] == 1);
    Seen t;
    t.merge(s);
    t.merge(s);
    CHECK(t.questions() == 12);
    CHECK_FALSE(t.empty());
    CHECK(Seen{}.empty());
}

TEST_CASE("coverage: the account") {
    CoverageAccount a;
    Seen seen;
    for (int i = 0; i < 10; ++i) {
        seen.add(tx(mp::mysql::kQuery, "select ?"));
    }
    StatusCounters own{{"Questions", 1}, {"Com_show_status", 1}};

    // The first reading is the baseline: nothing compared.
    a.reading({{"Questions", 100}, {"Com_select", 50}}, own, seen, 1);
    CHECK_FALSE(a.compared());
    CHECK(a.json("s").find("\"total\"") == std::string::npos);

    // 10 seen; the server counted 11 questions, one of them the watcher's own reading.
    a.reading({{"Questions", 111}, {"Com_select", 60}}, own, seen, 2);
    REQUIRE(a.compared());
    CHECK(figure(a.interval(), "questions", true) == 10);
    CHECK(figure(a.interval(), "questions", false) == 10);
    CHECK(figure(a.interval(), "select", false) == 10);
    CHECK(a.json("1.2.3.4:3306").find("\"ratio\":1,") != std::string::npos);

    // 10 seen of 20 counted: 0.5 for the interval, 20 / 30 since the baseline.
    a.reading({{"Questions", 132}, {"Com_select", 80}}, own, seen, 3);
    CHECK(figure(a.interval(), "questions", false) == 20);
    CHECK(figure(a.total(), "questions", true) == 20);
    CHECK(figure(a.total(), "questions", false) == 30);
    const std::string j = a.json("1.2.3.4:3306");
    CHECK(j.find("\"questions\":{\"seen\":10,\"counted\":20,\"ratio\":0.5}") != std::string::npos);
    CHECK(j.find("\"ratio\":0.666667") != std::string::npos);

    // A failed reading compares nothing, and the next one is a new baseline; totals stay.
    a.failed("server gone", seen, 4);
    CHECK_FALSE(a.compared());
    CHECK(a.json("s").find("\"error\":\"server gone\"") != std::string::npos);
    a.reading({{"Questions", 500}, {"Com_select", 300}}, own, seen, 5);
    CHECK_FALSE(a.compared());
    CHECK(figure(a.total(), "questions", false) == 30);
    a.reading({{"Questions", 511}, {"Com_select", 310}}, own, seen, 6);
    CHECK(a.compared());
    CHECK(figure(a.total(), "questions", false) == 40);
    CHECK(a.json("s").find("\"uncompared_intervals\":2") != std::string::npos);

    // Counters that went back (a restarted server): a new baseline, not a negative count.
    a.reading({{"Questions", 5}, {"Com_select", 1}}, own, seen, 7);
    CHECK_FALSE(a.compared());
    CHECK(figure(a.total(), "questions", false) == 40);
}
