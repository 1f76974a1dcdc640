// SPDX-License-Identifier: Apache-2.0
// ws_send's bounds on one connection's queue, on the server's internal state directly: the count
// limit, the connection's byte share and the server-wide budget that other connections share.
#include <doctest/doctest.h>

#include <string>

#include "server/server_impl.hpp"

namespace {

// A server's state without its loop (nothing is started) and one websocket handle on it.
struct Fixture {
    mp::host::Metrics metrics;
    mp::host::Authenticator auth{mp::host::AuthConfig{}};
    mp::host::HttpServer::Impl server;
    mp_ws_conn conn;

    explicit Fixture(size_t budget) : server(options(budget), metrics, auth) {
        conn.server = &server;
        conn.connId = 1;
    }
    static mp::host::HttpOptions options(size_t budget) {
        mp::host::HttpOptions o;
        o.maxBufferedBytes = budget;
        return o;
    }
    mp_status send(const std::string& text) {
        return mp::host::wsSend(
            &conn, MP_WS_TEXT,
            mp_bytes{reinterpret_cast<const uint8_t*>(text.data()), text.size()});
    }
    int64_t dropped() const {
        return metrics.value("mysqlprobe_http_websocket_dropped_messages_total");
    }
    // Bytes held for clients, this connection's queue included.
    int64_t buffered() const { return server.buffered.load(); }
};

}  // namespace

TEST_SUITE("ws_send") {
    TEST_CASE("a budget held by other connections refuses only the new message") {
        Fixture f(1000);
        CHECK(f.send(std::string(100, 'a')) == MP_OK);
        CHECK(f.send(std::string(100, 'b')) == MP_OK);
        CHECK(f.send(std::string(100, 'c')) == MP_OK);
        f.server.buffered.fetch_add(600);  // held for other connections
        REQUIRE(f.buffered() == 900);
        // 600 held by others + 500 is past the budget whatever this queue holds: emptying it
        // would not make room, so the queue stays and the new message alone is refused.
        CHECK(f.send(std::string(500, 'd')) == MP_EAGAIN);
        CHECK(f.conn.queue.size() == 3);
        CHECK(f.conn.queue.front().second == std::string(100, 'a'));
        CHECK(f.conn.queuedBytes == 300);
        CHECK(f.buffered() == 900);
        CHECK(f.dropped() == 1);
    }

    TEST_CASE("a message larger than the connection's share refuses only the new message") {
        Fixture f(1 << 20);
        f.conn.maxQueueBytes = 250;
        CHECK(f.send(std::string(100, 'a')) == MP_OK);
        CHECK(f.send(std::string(100, 'b')) == MP_OK);
        CHECK(f.send(std::string(300, 'c')) == MP_EAGAIN);
        CHECK(f.conn.queue.size() == 2);
        CHECK(f.conn.queuedBytes == 200);
        CHECK(f.buffered() == 200);
        CHECK(f.dropped() == 1);
    }

    TEST_CASE("the oldest messages go when that makes room under the server's budget") {
        Fixture f(1000);
        CHECK(f.send(std::string(100, 'a')) == MP_OK);
        CHECK(f.send(std::string(100, 'b')) == MP_OK);
        CHECK(f.send(std::string(100, 'c')) == MP_OK);
        f.server.buffered.fetch_add(600);
        // 900 + 200 is past 1000: the oldest one goes (800 + 200 fits), the new one is queued.
        CHECK(f.send(std::string(200, 'd')) == MP_EAGAIN);
        REQUIRE(f.conn.queue.size() == 3);
        CHECK(f.conn.queue.front().second == std::string(100, 'b'));
        CHECK(f.conn.queue.back().second == std::string(200, 'd'));
        CHECK(f.conn.queuedBytes == 400);
        CHECK(f.buffered() == 1000);
        CHECK(f.dropped() == 1);
    }

    TEST_CASE("the oldest message goes when the queue is at its count limit") {
        Fixture f(1 << 20);
        f.conn.maxQueue = 2;
        CHECK(f.send("one") == MP_OK);
        CHECK(f.send("two") == MP_OK);
        CHECK(f.send("three") == MP_EAGAIN);
        REQUIRE(f.conn.queue.size() == 2);
        CHECK(f.conn.queue.front().second == "two");
        CHECK(f.conn.queue.back().second == "three");
        CHECK(f.conn.queuedBytes == 8);
        CHECK(f.buffered() == 8);
        CHECK(f.dropped() == 1);
    }

    TEST_CASE("a closed connection takes nothing") {
        Fixture f(1000);
        f.conn.closed = true;
        CHECK(f.send("late") == MP_ECLOSED);
        CHECK(f.conn.queue.empty());
        CHECK(f.buffered() == 0);
        CHECK(f.dropped() == 0);
    }
}
