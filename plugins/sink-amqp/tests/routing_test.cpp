// SPDX-License-Identifier: Apache-2.0
#include "routing.hpp"

#include <doctest/doctest.h>

TEST_CASE("routing-key templates") {
    std::string why;
    CHECK(mp::amqp::validTemplate("mysqlprobe.report.{node}", why));
    CHECK(mp::amqp::expand("mysqlprobe.{type}.{node}.{seq}",
                           {{"node", "db1:8667"}, {"type", "report"}, {"seq", "7"}}) ==
          "mysqlprobe.report.db1:8667.7");
    CHECK(mp::amqp::expand("a{{b}}c", {}) == "a{b}c");
    CHECK(mp::amqp::validTemplate("a{{b}}c", why));

    CHECK_FALSE(mp::amqp::validTemplate("x.{node", why));
    CHECK(why == "unclosed '{' at 2");
    CHECK_FALSE(mp::amqp::validTemplate("x.{schema}", why));
    CHECK(why.find("unknown placeholder {schema}") == 0);
    CHECK_FALSE(mp::amqp::validTemplate("x}", why));
    CHECK_FALSE(mp::amqp::validTemplate(std::string(256, 'k'), why));
    CHECK(why == "longer than 255 bytes");
    // A long value is cut to AMQP's 255-byte limit.
    CHECK(mp::amqp::expand("{node}", {{"node", std::string(300, 'n')}}).size() == 255);
}
