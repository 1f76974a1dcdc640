// SPDX-License-Identifier: Apache-2.0
// monitor-mysql's decisions without servers: node states, the LAIN feed, GTID comparisons, the
// registry's JSON, the InnoDB summary and the instance syntax.
#include "topology.hpp"

#include <doctest/doctest.h>

#include <mp/sdk.hpp>

#include "poll.hpp"

using namespace mp::monitor;

namespace {
std::map<std::string, Instance> instances() {
    return {{"a", {"a", "127.0.0.1", 3307}},
            {"b", {"b", "127.0.0.1", 3308}},
            {"c", {"c", "127.0.0.1", 3309}}};
}

NodeStatus replicaOf(const std::string& host, uint16_t port, const char* io = "Yes",
                     const char* sql = "Yes", std::optional<int64_t> lag = 0) {
    NodeStatus s;
    s.reachable = true;
    ReplicaStatus r;
    r.masterHost = host;
    r.masterPort = port;
    r.ioRunning = io;
    r.sqlRunning = sql;
    r.lagSeconds = lag;
    s.replica = r;
    return s;
}
}  // namespace

TEST_SUITE("monitor-mysql") {
    TEST_CASE("states follow LAIN's rules") {
        Registry reg;
        reg.nodes["a"] = {Role::Master, false};
        reg.nodes["b"] = {Role::Standby, false};
        std::map<std::string, NodeStatus> st;
        NodeStatus up;
        up.reachable = true;
        st["a"] = up;
        st["b"] = replicaOf("127.0.0.1", 3307);
        st["c"] = up;
        auto inst = instances();
        CHECK(stateOf("a", reg, inst, st, 10).state == State::Ok);
        CHECK(stateOf("b", reg, inst, st, 10).state == State::Ok);
        CHECK(stateOf("c", reg, inst, st, 10).state == State::Unregistered);
        reg.nodes["c"] = {Role::Slave, false};
        CHECK(stateOf("c", reg, inst, st, 10).state == State::Detached);  // no replication
        st["c"] = replicaOf("127.0.0.1", 3308);  // from the standby, not the master
        NodeView lost = stateOf("c", reg, inst, st, 10);
        CHECK(lost.state == State::Lost);
        CHECK(lost.reason.find("127.0.0.1:3308") != std::string::npos);
        st["c"] = replicaOf("127.0.0.1", 3307, "Yes", "Yes", 11);
        CHECK(stateOf("c", reg, inst, st, 10).state == State::Syncing);  // behind
        st["c"] = replicaOf("127.0.0.1", 3307, "Connecting", "Yes", std::nullopt);
        CHECK(stateOf("c", reg, inst, st, 10).state == State::Syncing);
        st["c"].replica->lastIoError = "error connecting to master";
        CHECK(stateOf("c", reg, inst, st, 10).reason.find("error connecting") != std::string::npos);
        reg.nodes["c"].paused = true;
        CHECK(stateOf("c", reg, inst, st, 10).state == State::Pause);
        st["a"].reachable = false;
        st["a"].error = "connection refused";
        NodeView err = stateOf("a", reg, inst, st, 10);
        CHECK(err.state == State::Error);
        CHECK(err.reason == "connection refused");
        st.erase("b");
        CHECK(stateOf("b", reg, inst, st, 10).state == State::Error);  // never polled
    }

    TEST_CASE("the feed is LAIN's shape: the master, and the replicas that are OK") {
        Registry reg;
        reg.nodes["a"] = {Role::Master, false};
        reg.nodes["b"] = {Role::Standby, false};
        reg.nodes["c"] = {Role::Slave, false};
        std::map<std::string, NodeView> views{
            {"a", {State::Error, ""}}, {"b", {State::Ok, ""}}, {"c", {State::Syncing, ""}}};
        CHECK(lainJson(reg, instances(), views) ==
              "{\"master\":{\"containers\":[{\"container_ip\":\"127.0.0.1\",\"container_port\":"
              "3307}]},\"slave\":{\"containers\":[{\"container_ip\":\"127.0.0.1\","
              "\"container_port\":3308}]}}");
        CHECK(lainJson(Registry{}, instances(), {}) ==
              "{\"master\":{\"containers\":[]},\"slave\":{\"containers\":[]}}");
    }

    TEST_CASE("a replication stopped on an error, not one reconnecting, disqualifies") {
        mp::monitor::ReplicaStatus r;
        r.ioRunning = "Connecting";  // the master died: it retries
        r.sqlRunning = "Yes";
        r.lastIoError = "error reconnecting to master";
        CHECK_FALSE(r.stoppedOnError());
        r.ioRunning = "No";  // refused by the master: 1236, diverged
        r.lastIoError = "Got fatal error 1236 from master when reading data from binary log";
        CHECK(r.stoppedOnError());
        r = mp::monitor::ReplicaStatus{};
        r.ioRunning = "Yes";
        r.sqlRunning = "No";
        CHECK_FALSE(r.stoppedOnError());  // stopped by hand
        r.lastSqlError = "Duplicate entry";
        CHECK(r.stoppedOnError());
    }

    TEST_CASE("GTID positions: per domain, covers and weight") {
        auto g = parseGtids("0-1-100,1-2-7, 2-3-9");
        CHECK(g.size() == 3);
        CHECK(g[0] == 100);
        CHECK(g[1] == 7);
        CHECK(g[2] == 9);
        CHECK(gtidCovers("0-1-100,1-2-7", "0-2-99"));
        CHECK(gtidCovers("0-1-100", ""));
        CHECK_FALSE(gtidCovers("0-1-100", "0-1-101"));
        CHECK_FALSE(gtidCovers("0-1-100", "1-1-1"));
        CHECK(gtidWeight("0-1-100,1-2-7") == 107);
        CHECK(parseGtids("garbage,0-1-,--,-1-2,0-1-x").empty());
    }

    TEST_CASE("the registry round-trips through its JSON and refuses damage") {
        Registry reg;
        reg.nodes["a"] = {Role::Master, false};
        reg.nodes["b"] = {Role::Standby, true};
        reg.mutual = true;
        reg.version = 7;
        Registry back = Registry::fromJson(reg.toJson());
        CHECK(back.toJson() == reg.toJson());
        CHECK(*back.master() == "a");
        CHECK(*back.standby() == "b");
        CHECK_THROWS_WITH_AS(Registry::fromJson("{"), doctest::Contains("damaged state"),
                             mp::Error);
        CHECK_THROWS_AS(Registry::fromJson("{\"format\":2}"), mp::Error);
        CHECK_THROWS_WITH_AS(
            Registry::fromJson("{\"format\":1,\"version\":1,\"mutual\":false,\"nodes\":{\"a\":{"
                               "\"role\":\"master\",\"paused\":false},\"b\":{\"role\":\"master\","
                               "\"paused\":false}}}"),
            doctest::Contains("more than one master"), mp::Error);
        CHECK_THROWS_AS(
            Registry::fromJson("{\"format\":1,\"version\":1,\"mutual\":false,\"nodes\":{\"A!\":{"
                               "\"role\":\"slave\",\"paused\":false}}}"),
            mp::Error);
    }

    TEST_CASE("instances are name=host:port") {
        Instance i = parseInstance("db1=127.0.0.1:3307");
        CHECK(i.name == "db1");
        CHECK(i.host == "127.0.0.1");
        CHECK(i.port == 3307);
        CHECK(parseInstance("v6=[::1]:3306").host == "::1");
        CHECK_THROWS_WITH_AS(parseInstance("127.0.0.1:3307"), doctest::Contains("name=host:port"),
                             mp::Error);
        CHECK_THROWS_WITH_AS(parseInstance("DB=h:1"), doctest::Contains("not a name"), mp::Error);
        CHECK_THROWS_AS(parseInstance("db=h:0"), mp::Error);
        CHECK_THROWS_AS(parseInstance("db=h"), mp::Error);
    }

    TEST_CASE("the InnoDB summary and SQL quoting") {
        const std::string text =
            "------------\nTRANSACTIONS\n------------\nTrx id counter 1234\nHistory list length "
            "42\n---\nLOG\n---\nLog sequence number 1000\nLog flushed up to 990\nLast checkpoint "
            "at 900\n0 pending log flushes\n3 queries inside InnoDB, 1 queries in queue\n"
            "Buffer pool hit rate 999 / 1000, young-making rate 0 / 1000\n";
        auto s = innodbSummary(text);
        CHECK(s["history_list_length"] == "42");
        CHECK(s["log_sequence_number"] == "1000");
        CHECK(s["checkpoint_age"] == "100");
        CHECK(s["queries_inside"] == "3");
        CHECK(s["queries_in_queue"] == "1");
        CHECK(s["buffer_pool_hit_rate"] == "999 / 1000");
        CHECK(innodbSummary("nothing").empty());
        CHECK(sqlQuote("it's a \\ test") == "'it\\'s a \\\\ test'");
    }
}
