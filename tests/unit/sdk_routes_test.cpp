// SPDX-License-Identifier: Apache-2.0
// mp::Routes, the SDK's route table, on the SDK's fake host: member handlers reached by path,
// HttpError answered as {"error": why} with its status, any other exception a 500 whose message
// reaches the log and not the caller.
#include <doctest/doctest.h>

#include <mp/sdk.hpp>
#include <mp/testing.hpp>
#include <stdexcept>

namespace {

class RoutedSink : public mp::Plugin {
  public:
    RoutedSink(mp::Host host, const mp::Config& /*cfg*/) : Plugin(host) {
        routes_.add("/demo/echo", &RoutedSink::echo, MP_ROLE_READ);
        routes_.add("/demo/refuse", &RoutedSink::refuse, MP_ROLE_ADMIN, MP_HTTP_POST);
        routes_.add("/demo/broken", &RoutedSink::broken, MP_ROLE_READ);
    }

  private:
    void echo(const mp_http_request* req, mp_http_response* resp) {
        ++calls_;
        host().replyJson(resp, 200,
                         "{\"x\":" + mp::jsonString(host().param(req, "x").value_or("")) +
                             ",\"calls\":" + std::to_string(calls_) + "}");
    }
    void refuse(const mp_http_request* /*req*/, mp_http_response* /*resp*/) {
        throw mp::HttpError(409, "not in this state: \"paused\"");
    }
    void broken(const mp_http_request* /*req*/, mp_http_response* /*resp*/) {
        throw std::runtime_error("secret-ish internal detail");
    }

    int calls_ = 0;
    mp::Routes<RoutedSink> routes_{*this};
};

}  // namespace

MP_DECLARE_PLUGIN(RoutedSink, MP_KIND_SINK, "sink-routed", "1.0.0", "mp::Routes under test",
                  nullptr, 0)

TEST_CASE("mp::Routes: handlers by path, JSON errors, exceptions kept from the caller") {
    mp::testing::FakeHost host;
    auto inst = host.create(mp_plugin_entry_v1(host.api()));
    REQUIRE(host.hasRoute("/demo/echo"));

    auto r = host.http("GET", "/demo/echo", "x=a%20b");
    CHECK(r.status == 200);
    CHECK(r.contentType == "application/json");
    CHECK(r.body == R"({"x":"a b","calls":1})");
    CHECK(host.http("GET", "/demo/echo").body == R"({"x":"","calls":2})");

    r = host.http("POST", "/demo/refuse");
    CHECK(r.status == 409);
    CHECK(r.body == R"({"error":"not in this state: \"paused\""})");

    r = host.http("GET", "/demo/broken");
    CHECK(r.status == 500);
    CHECK(r.body == R"({"error":"internal error"})");
    bool logged = false;
    for (const auto& [level, msg] : host.logs()) {
        logged |= level == MP_LOG_ERROR && msg == "/demo/broken: secret-ish internal detail";
    }
    CHECK(logged);
}
