// SPDX-License-Identifier: Apache-2.0
#include <doctest/doctest.h>

#include <mp/amqp_url.hpp>

TEST_SUITE("amqp") {
    TEST_CASE("broker URLs") {
        mp::amqp::Url u;
        std::string why;
        REQUIRE(mp::amqp::parseUrl("amqp://rabbit.example:5673/%2F", u, why));
        CHECK(u.host == "rabbit.example");
        CHECK(u.port == 5673);
        CHECK(u.vhost == "/");
        REQUIRE(mp::amqp::parseUrl("amqp://127.0.0.1", u, why));
        CHECK(u.port == 5672);
        CHECK(u.vhost == "/");
        REQUIRE(mp::amqp::parseUrl("amqp://[::1]:5672/prod%2Fprobes", u, why));
        CHECK(u.host == "::1");
        CHECK(u.vhost == "prod/probes");

        CHECK_FALSE(u.tls);
        REQUIRE(mp::amqp::parseUrl("amqps://rabbit.example/", u, why));  // TLS, its own port
        CHECK(u.tls);
        CHECK(u.port == 5671);
        REQUIRE(mp::amqp::parseUrl("amqps://rabbit.example:5673/", u, why));
        CHECK(u.port == 5673);

        CHECK_FALSE(mp::amqp::parseUrl("http://h/", u, why));
        CHECK(why == "the scheme must be amqp:// or amqps:// (TLS)");
        CHECK_FALSE(mp::amqp::parseUrl("amqp://user:pw@h/", u, why));
        CHECK(why.find("pw") == std::string::npos);
        CHECK_FALSE(mp::amqp::parseUrl("amqp://h/a/b", u, why));
        CHECK_FALSE(mp::amqp::parseUrl("amqp://h/?heartbeat=5", u, why));
        CHECK_FALSE(mp::amqp::parseUrl("amqp:///vhost", u, why));
        CHECK_FALSE(mp::amqp::parseUrl("amqp://h:99999/", u, why));
        CHECK_FALSE(mp::amqp::parseUrl("amqp://h/%zz", u, why));
    }

    TEST_CASE("a malformed URL is refused without quoting it") {
        mp::amqp::Url u;
        std::string why;
        // Poco decodes the query lazily: this one threw out of parseUrl (found by fuzz_amqp).
        CHECK_FALSE(mp::amqp::parseUrl("amqp://h/?%", u, why));
        CHECK_FALSE(mp::amqp::parseUrl("amqp://u:secretpw@h/%zz", u, why));
        CHECK(why.find("secretpw") == std::string::npos);
    }
}
