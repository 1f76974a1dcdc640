// SPDX-License-Identifier: Apache-2.0
#include "routing.hpp"

#include <doctest/doctest.h>

namespace {

mp::amqp::RoutingTemplate parsed(const std::string& text) {
    std::string why;
    auto t = mp::amqp::RoutingTemplate::parse(text, why);
    REQUIRE_MESSAGE(t.has_value(), why);
    return *t;
}

std::string failure(const std::string& text) {
    std::string why;
    CHECK_FALSE(mp::amqp::RoutingTemplate::parse(text, why).has_value());
    return why;
}

}  // namespace

TEST_CASE("routing-key templates") {
    using mp::amqp::Var;
    mp::amqp::Values v{};
    v[static_cast<size_t>(Var::Node)] = "db1:8667";
    v[static_cast<size_t>(Var::Type)] = "report";
    v[static_cast<size_t>(Var::Seq)] = "7";
    v[static_cast<size_t>(Var::Stream)] = "binlog.rows";
    v[static_cast<size_t>(Var::Producer)] = "sources[0]";
    CHECK(parsed("mysqlprobe.{type}.{node}.{seq}").render(v) == "mysqlprobe.report.db1:8667.7");
    CHECK(parsed("{stream}.{key}").render(v) == "binlog.rows.");  // an empty key renders empty
    CHECK(parsed("a{{b}}c").render(v) == "a{b}c");
    CHECK(parsed("").render(v).empty());

    CHECK(failure("x.{node") == "unclosed '{' at 2");
    CHECK(failure("x.{schema}").find("unknown placeholder {schema}") == 0);
    CHECK(failure("x}").find("a lone '}'") == 0);
    CHECK(failure(std::string(256, 'k')) == "longer than 255 bytes");
    // A long value is cut to AMQP's 255-byte limit.
    std::string longNode(300, 'n');
    v[static_cast<size_t>(Var::Node)] = longNode;
    CHECK(parsed("{node}").render(v).size() == 255);
}
