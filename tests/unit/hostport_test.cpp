// SPDX-License-Identifier: Apache-2.0
// "host:port": the one parser of libs/net, as the pusher, cluster-static and cluster-gossip use it.
#include <doctest/doctest.h>

#include <mp/hostport.hpp>

using mp::net::HostKind;
using mp::net::parseHostPort;

TEST_SUITE("hostport") {
    TEST_CASE("names, IPv4 and bracketed IPv6 with a port") {
        auto a = parseHostPort("db-1.example.com:8667");
        REQUIRE(a);
        CHECK(a->host == "db-1.example.com");
        CHECK(a->port == 8667);
        CHECK(a->text() == "db-1.example.com:8667");
        auto b = parseHostPort("127.0.0.1:1");
        REQUIRE(b);
        CHECK(b->host == "127.0.0.1");
        CHECK(b->port == 1);
        auto c = parseHostPort("[::1]:65535");
        REQUIRE(c);
        CHECK(c->host == "::1");
        CHECK(c->port == 65535);
        CHECK(c->text() == "[::1]:65535");
    }

    TEST_CASE("everything else is refused") {
        for (const char* bad : {"",
                                "host",
                                "host:",
                                ":80",
                                "host:0",
                                "host:65536",
                                "host:8x",
                                "host:-1",
                                "::1:80",
                                "[::1]",
                                "[name]:80",
                                "[::1:80",
                                "user@host:80",
                                "host:80/path",
                                "host:80?q",
                                "ws://host:80",
                                "a b:80",
                                "host:80:81",
                                "host:+80",
                                "host: 80"}) {
            CHECK_MESSAGE(!parseHostPort(bad), bad);
        }
        CHECK(!parseHostPort(std::string(290, 'a') + ":80", HostKind::Any, 64));
    }

    TEST_CASE("literal addresses only, when asked") {
        CHECK(parseHostPort("10.1.2.3:7946", HostKind::Ipv4));
        CHECK(!parseHostPort("node1:7946", HostKind::Ipv4));
        CHECK(!parseHostPort("[::1]:7946", HostKind::Ipv4));
        CHECK(parseHostPort("[::1]:7946", HostKind::Ip));
        CHECK(!parseHostPort("node1:7946", HostKind::Ip));
        CHECK(!parseHostPort("999.1.1.1:7946", HostKind::Ip));
    }

    TEST_CASE("hostOf") {
        CHECK(mp::net::hostOf("10.0.0.1:3306") == "10.0.0.1");
        CHECK(mp::net::hostOf("[fe80::1]:3306") == "fe80::1");
        CHECK(mp::net::hostOf("no-port") == "no-port");
    }
}
