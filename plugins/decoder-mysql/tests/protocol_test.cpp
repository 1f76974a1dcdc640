// SPDX-License-Identifier: Apache-2.0
// Hand-built sessions for what no bundled capture shows on its own: the schema a connection is
// in after USE (with and without session tracking), a session-state change, COM_INIT_DB and
// COM_CHANGE_USER; MariaDB's direct execute pipelined behind its prepare. Packets are built
// from the protocol documentation, byte by byte.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "session.hpp"

using mp::mysql::Outcome;
using mp::mysql::Session;
using mp::mysql::SessionLimits;
using mp::mysql::Transaction;

namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kCaps = 0x00000001     // CLIENT_MYSQL (a MySQL server: no MariaDB caps)
                           | 0x00000008   // CONNECT_WITH_DB
                           | 0x00000200   // PROTOCOL_41
                           | 0x00008000   // SECURE_CONNECTION
                           | 0x00080000;  // PLUGIN_AUTH
constexpr uint32_t kSessionTrack = 0x00800000;

void le(Bytes& b, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
}
void str(Bytes& b, const std::string& s, bool nul = true) {
    b.insert(b.end(), s.begin(), s.end());
    if (nul) {
        b.push_back(0);
    }
}
void lenencStr(Bytes& b, const std::string& s) {
    b.push_back(static_cast<uint8_t>(s.size()));  // short strings only
    str(b, s, false);
}
Bytes packet(uint8_t seq, const Bytes& payload) {
    Bytes b;
    le(b, payload.size(), 3);
    b.push_back(seq);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}
Bytes ok(uint16_t status = 0x0002, const Bytes& tail = {}) {
    Bytes b{0x00, 0x00, 0x00};
    le(b, status, 2);
    le(b, 0, 2);  // warnings
    b.insert(b.end(), tail.begin(), tail.end());
    return b;
}

// The server's greeting (handshake v10) and the client's HandshakeResponse41.
Bytes greeting(uint32_t caps, const std::string& version, uint32_t connectionId) {
    Bytes g{0x0a};
    str(g, version);
    le(g, connectionId, 4);
    str(g, "abcdefgh", false);
    g.push_back(0);
    le(g, caps & 0xffff, 2);
    g.push_back(0x21);
    le(g, 0x0002, 2);
    le(g, caps >> 16, 2);
    g.push_back(21);
    g.insert(g.end(), 10, 0);
    str(g, "ijklmnopqrst");
    str(g, "mysql_native_password");
    return packet(0, g);
}

Bytes handshakeResponse(uint32_t caps, uint8_t collation, const std::string& user,
                        const std::string& schema) {
    Bytes r;
    le(r, caps, 4);
    le(r, 1u << 24, 4);
    r.push_back(collation);
    r.insert(r.end(), 23, 0);
    str(r, user);
    r.push_back(20);
    r.insert(r.end(), 20, 0x5a);
    str(r, schema);
    str(r, "mysql_native_password");
    return packet(1, r);
}

struct Conn {
    std::vector<Transaction> txs;
    Session s;
    uint64_t ts = 1000;

    explicit Conn(uint32_t caps, mp::mysql::StatementTexts* texts = nullptr,
                  SessionLimits limits = {})
        : s(
              limits, false, [this](const Transaction& t) { txs.push_back(t); }, texts) {
        server(greeting(caps, "8.0.36", 7));
        client(handshakeResponse(caps, 0x21, "alice", "shop"));
        server(packet(2, ok()));
    }
    void client(const Bytes& b) { s.data(0, b.data(), b.size(), ts += 10); }
    void server(const Bytes& b) { s.data(1, b.data(), b.size(), ts += 10); }
    void query(const std::string& sql, const Bytes& answer) {
        Bytes q{0x03};
        str(q, sql, false);
        client(packet(0, q));
        server(packet(1, answer));
    }
    // A prepare answered with `id` (no parameters, no columns).
    void prepare(uint32_t id, const std::string& sql) {
        Bytes q{0x16};
        str(q, sql, false);
        client(packet(0, q));
        Bytes pok{0x00};
        le(pok, id, 4);
        le(pok, 0, 2);
        le(pok, 0, 2);
        pok.push_back(0);
        le(pok, 0, 2);
        server(packet(1, pok));
    }
    // An execute of `id`, answered OK; its transaction.
    const Transaction& execute(uint32_t id) {
        Bytes e{0x17};
        le(e, id, 4);
        e.push_back(0);
        le(e, 1, 4);
        client(packet(0, e));
        server(packet(1, ok()));
        return txs.back();
    }
    void close(uint32_t id) {
        Bytes c{0x19};
        le(c, id, 4);
        client(packet(0, c));
    }
    // The schema and user the server would attribute the next statement to.
    std::pair<std::string, std::string> where() {
        query("UPDATE t SET a = 1", ok());
        REQUIRE(!txs.empty());
        return {txs.back().schema, txs.back().user};
    }
};

}  // namespace

TEST_SUITE("decoder-mysql") {
    TEST_CASE("the current schema follows USE, COM_INIT_DB, session-state changes, change-user") {
        for (uint32_t caps : {kCaps, kCaps | kSessionTrack}) {
            CAPTURE(caps);
            Conn c(caps);
            CHECK(c.where() == std::pair<std::string, std::string>{"shop", "alice"});
            // A plain USE, backquoted or not, with or without ';' (the server answers OK with no
            // session state: its tracking may be off).
            c.query("USE `other db`", ok());
            CHECK(c.where().first == "other db");
            c.query("  use third ;", ok());
            CHECK(c.where().first == "third");
            // Not a plain USE: nothing changes.
            c.query("USE", ok());
            c.query("UPDATE users SET a = 1", ok());
            c.query("USE a; USE b", ok());
            CHECK(c.where().first == "third");
            // A USE that fails changes nothing.
            c.query("USE nosuch", Bytes{0xff, 0x19, 0x04, '#', '4', '2', '0', '0', '0', 'x'});
            CHECK(c.txs.back().outcome == Outcome::Error);
            CHECK(c.where().first == "third");

            // COM_INIT_DB.
            Bytes init{0x02};
            str(init, "initdb", false);
            c.client(packet(0, init));
            c.server(packet(1, ok()));
            CHECK(c.where().first == "initdb");

            // A session-state change in an OK (a procedure that ran USE): read only when
            // CLIENT_SESSION_TRACK was negotiated, as the server sends it only then.
            Bytes state;
            state.push_back(0);  // info: empty
            Bytes entry;
            lenencStr(entry, "fromproc");
            Bytes changes{0x01, static_cast<uint8_t>(entry.size())};  // SESSION_TRACK_SCHEMA
            changes.insert(changes.end(), entry.begin(), entry.end());
            changes.insert(changes.begin(), {0x03, 0x01, 0x00});  // another kind first: skipped
            state.push_back(static_cast<uint8_t>(changes.size()));
            state.insert(state.end(), changes.begin(), changes.end());
            c.query("CALL p()", ok(0x4002, state));
            CHECK(c.where().first == ((caps & kSessionTrack) != 0 ? "fromproc" : "initdb"));

            // COM_CHANGE_USER: user, auth data, schema, charset, plugin.
            Bytes cu{0x11};
            str(cu, "bob");
            cu.push_back(20);
            cu.insert(cu.end(), 20, 0x33);
            str(cu, "cudb");
            le(cu, 0x21, 2);
            str(cu, "mysql_native_password");
            c.client(packet(0, cu));
            c.server(packet(1, ok()));
            CHECK(c.where() == std::pair<std::string, std::string>{"cudb", "bob"});
            // ... and with no schema: none.
            Bytes cu2{0x11};
            str(cu2, "carol");
            cu2.push_back(0);
            str(cu2, "");
            c.client(packet(0, cu2));
            c.server(packet(1, ok()));
            CHECK(c.where() == std::pair<std::string, std::string>{"", "carol"});
        }
    }

    TEST_CASE("COM_PROCESS_KILL, COM_PING, COM_STATISTICS, an unknown command: each answered") {
        Conn c(kCaps);
        c.client(packet(0, Bytes{0x0c, 0x2a, 0x00, 0x00, 0x00}));  // KILL 42
        c.server(packet(1, ok()));
        c.client(packet(0, Bytes{0x0c, 0x07, 0x00, 0x00, 0x00}));  // no such thread
        c.server(packet(1, Bytes{0xff, 0x4a, 0x04, '#', 'H', 'Y', '0', '0', '0', 'x'}));
        c.client(packet(0, Bytes{0x0e}));
        c.server(packet(1, ok()));
        c.client(packet(0, Bytes{0x09}));
        Bytes stat;
        str(stat, "Uptime: 1  Threads: 1", false);
        c.server(packet(1, stat));
        c.client(packet(0, Bytes{0x42, 0x01}));
        c.server(packet(1, Bytes{0xff, 0x17, 0x04, '#', '0', '8', 'S', '0', '1', 'x'}));
        REQUIRE(c.txs.size() == 5);
        CHECK(mp::mysql::commandName(c.txs[0].command) == "COM_PROCESS_KILL");
        CHECK(c.txs[0].outcome == Outcome::Ok);
        CHECK(c.txs[1].outcome == Outcome::Error);
        CHECK(c.txs[1].errorCode == 1098);
        CHECK(c.txs[1].sqlState == "HY000");
        CHECK(mp::mysql::commandName(c.txs[2].command) == "COM_PING");
        CHECK(c.txs[2].outcome == Outcome::Ok);
        CHECK(mp::mysql::commandName(c.txs[3].command) == "COM_STATISTICS");
        CHECK(c.txs[3].outcome == Outcome::Ok);
        CHECK(mp::mysql::commandName(c.txs[4].command) == "COM_UNKNOWN_0x42");
        CHECK(c.txs[4].errorCode == 1047);
        for (const Transaction& t : c.txs) {
            CHECK(t.connectionId == 7);
            CHECK(t.responseTs > t.requestTs);
        }
    }

    TEST_CASE("prepared statements: shared texts, closes, any id order, the per-connection bound") {
        mp::mysql::StatementTexts texts;
        {
            Conn a(kCaps, &texts);
            Conn b(kCaps, &texts);
            a.prepare(1, "SELECT c FROM t WHERE id = ?");
            b.prepare(1, "SELECT c FROM t WHERE id = ?");
            b.prepare(2, "DELETE FROM t WHERE id = ?");
            CHECK(texts.size() == 2);  // one copy of each text, however many connections
            CHECK(a.execute(1).sql == "SELECT c FROM t WHERE id = ?");
            CHECK(b.execute(2).sql == "DELETE FROM t WHERE id = ?");
            a.close(1);
            CHECK(texts.size() == 2);  // b still holds it
            CHECK(a.execute(1).sql.empty());
            b.close(1);
            CHECK(texts.size() == 1);
            // A connection that prepares and closes, over and over, holds one statement.
            for (uint32_t id = 10; id < 2010; ++id) {
                a.prepare(id, "UPDATE t SET n = n + 1 WHERE id = " + std::to_string(id % 7));
                CHECK(a.execute(id).sql.size() > 10);
                a.close(id);
            }
            CHECK(texts.size() == 1);
            // Ids in any order are found.
            for (uint32_t id : {50u, 30u, 90u, 40u}) {
                a.prepare(id, "SELECT " + std::to_string(id));
            }
            for (uint32_t id : {90u, 30u, 40u, 50u}) {
                CHECK(a.execute(id).sql == "SELECT " + std::to_string(id));
            }
            a.close(30);
            CHECK(a.execute(30).sql.empty());
            CHECK(a.execute(40).sql == "SELECT 40");
        }
        CHECK(texts.size() == 0);  // sessions gone: every reference released
        CHECK(texts.typeSets() == 0);

        // The bound: the oldest statement is forgotten; its executes are unknown, counted.
        SessionLimits two;
        two.maxStatements = 2;
        Conn c(kCaps, nullptr, two);
        c.prepare(1, "SELECT 1");
        c.prepare(2, "SELECT 2");
        c.prepare(3, "SELECT 3");
        CHECK(c.s.stats().statementEvictions == 1);
        CHECK(c.execute(1).sql.empty());
        CHECK(c.s.stats().unknownStatements == 1);
        CHECK(c.execute(2).sql == "SELECT 2");
        CHECK(c.execute(3).sql == "SELECT 3");
    }

    TEST_CASE("a direct execute pipelined behind its prepare gets the prepared text") {
        Conn c(kCaps);
        Bytes prep{0x16};
        str(prep, "UPDATE t SET a = ? WHERE id = 5", false);
        Bytes exec{0x17};
        le(exec, 0xffffffff, 4);
        exec.push_back(0);  // flags
        le(exec, 1, 4);     // iteration count
        // Both in one write, before any answer (mariadb_stmt_execute_direct).
        Bytes both = packet(0, prep);
        Bytes e = packet(0, exec);
        both.insert(both.end(), e.begin(), e.end());
        c.client(both);
        Bytes pok{0x00};
        le(pok, 1, 4);  // statement id
        le(pok, 0, 2);  // columns
        le(pok, 1, 2);  // params
        pok.push_back(0);
        le(pok, 0, 2);
        c.server(packet(1, pok));
        c.server(packet(2, Bytes{0x03, 'd', 'e', 'f'}));           // the parameter's definition
        c.server(packet(3, Bytes{0xfe, 0x00, 0x00, 0x02, 0x00}));  // EOF
        c.server(packet(1, ok()));                                 // the execute's answer
        REQUIRE(c.txs.size() == 2);
        const Transaction& ex = c.txs.back();
        CHECK(ex.command == mp::mysql::kStmtExecute);
        CHECK(ex.outcome == Outcome::Ok);
        CHECK(ex.sql == "UPDATE t SET a = ? WHERE id = 5");
        CHECK(ex.fingerprint == c.txs[c.txs.size() - 2].fingerprint);
        CHECK(ex.fingerprint == "update t set a = ? where id = ?");
        // A later direct execute, the prepare answered long ago: the last prepared statement.
        c.client(packet(0, exec));
        c.server(packet(1, ok()));
        CHECK(c.txs.back().sql == "UPDATE t SET a = ? WHERE id = 5");
    }
    TEST_CASE("collector: each command's exact bytes, in the order sent, and the login") {
        SessionLimits limits;
        limits.keepPackets = true;
        limits.maxCommandBytes = 4096;
        Conn c(kCaps, nullptr, limits);
        // A statement closed while a query still waits for its answer: the close (no answer)
        // comes out after the query, as it was sent.
        c.prepare(3, "SELECT 1");
        Bytes q{0x03};
        str(q, "SELECT 2", false);
        c.client(packet(0, q));
        c.close(3);
        REQUIRE(c.txs.size() == 1);  // the close waits for the query before it
        c.server(packet(1, ok()));
        REQUIRE(c.txs.size() == 3);
        CHECK(c.txs[1].command == mp::mysql::kQuery);
        CHECK(c.txs[1].packet == std::string("\x03SELECT 2"));
        CHECK(c.txs[2].command == mp::mysql::kStmtClose);
        CHECK(c.txs[2].packet == std::string("\x19\x03\x00\x00\x00", 5));
        CHECK(c.txs[0].statementId == 3);
        // A command longer than kept: its prefix, marked truncated.
        std::string big(5000, 'x');
        c.query("SELECT '" + big + "'", ok());
        CHECK(c.txs.back().packetTruncated);
        CHECK(c.txs.back().packet.size() == 4096);
        // Without keepPackets nothing is kept.
        Conn plain(kCaps);
        plain.query("SELECT 3", ok());
        CHECK(plain.txs.back().packet.empty());
    }

    TEST_CASE("collector: the login hook sees user, schema, flags and collation once") {
        std::vector<mp::mysql::LoginInfo> logins;
        SessionLimits limits;
        Session s(limits, false, [](const Transaction&) {});
        s.onLogin([&](const mp::mysql::LoginInfo& l, uint64_t) { logins.push_back(l); });
        Bytes p = greeting(kCaps, "10.11.6-MariaDB", 9);
        s.data(1, p.data(), p.size(), 10);
        p = handshakeResponse(kCaps, 45, "bob", "inventory");
        s.data(0, p.data(), p.size(), 20);
        CHECK(logins.empty());  // not before the server's answer
        p = packet(2, ok());
        s.data(1, p.data(), p.size(), 30);
        REQUIRE(logins.size() == 1);
        CHECK(logins[0].user == "bob");
        CHECK(logins[0].schema == "inventory");
        CHECK(logins[0].connectionId == 9);
        CHECK(logins[0].collation == 45);
        CHECK(logins[0].clientFlags == kCaps);
        CHECK_FALSE(logins[0].failed);
    }
}
