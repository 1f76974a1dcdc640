// SPDX-License-Identifier: Apache-2.0
// The auth: section and the Authenticator: who a request is, in token mode and protected mode.
#include "server/auth.hpp"

#include <doctest/doctest.h>

#include "config/config.hpp"

using mp::host::AuthConfig;
using mp::host::Authenticator;
using mp::host::Caller;
using mp::host::ConfigError;
using mp::host::Overrides;
using mp::host::parseConfig;
using mp::host::RequestFacts;

namespace {

std::string parseError(const std::string& text) {
    try {
        parseConfig(text, "t.yaml", Overrides{});
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

Caller who(const Authenticator& a, std::string_view authorization, std::string_view ip,
           std::string_view host = "", std::string_view origin = "",
           std::string_view queryToken = "") {
    return a.identify(RequestFacts{authorization, queryToken, ip, host, origin});
}

const char* kTokens =
    "auth:\n"
    "  tokens:\n"
    "    - {name: dash, role: read, token: read-secret-0123456789}\n"
    "    - {name: node, role: peer, token: peer-secret-0123456789}\n"
    "    - {name: ops, role: admin, token: admin-secret-012345678}\n"
    "  cluster_token: node\n";

}  // namespace

TEST_SUITE("auth") {
    TEST_CASE("tokens: each token has its role; anything else is anonymous or refused") {
        auto cfg = parseConfig(kTokens, "t.yaml", Overrides{});
        REQUIRE(cfg.auth.tokens.size() == 3);
        Authenticator a(cfg.auth);
        CHECK_FALSE(a.protectedMode());
        CHECK(a.peerAuthorization() == "Bearer peer-secret-0123456789");
        Caller c = who(a, "Bearer read-secret-0123456789", "10.0.0.1");
        CHECK(c.role == MP_ROLE_READ);
        CHECK(c.principal == "dash");
        CHECK(who(a, "bearer   admin-secret-012345678 ", "10.0.0.1").role == MP_ROLE_ADMIN);
        CHECK(who(a, "Bearer peer-secret-0123456789", "10.0.0.1").principal == "node");
        // A wrong token, another scheme, or "Bearer" alone: refused, whatever the address.
        CHECK(who(a, "Bearer read-secret-0123456780", "127.0.0.1").badCredentials);
        CHECK(who(a, "Basic read-secret-0123456789", "127.0.0.1").badCredentials);
        CHECK(who(a, "Bearer", "127.0.0.1").badCredentials);
        // No token: anonymous, also on loopback (no protected mode once tokens exist).
        Caller anon = who(a, "", "127.0.0.1", "localhost");
        CHECK(anon.role == MP_ROLE_ANYONE);
        CHECK(anon.principal == "anonymous");
        CHECK_FALSE(anon.badCredentials);
        // The query token is used only when the server passes it (websocket upgrades).
        CHECK(who(a, "", "10.0.0.1", "", "", "read-secret-0123456789").role == MP_ROLE_READ);
        // The header wins over the query token.
        CHECK(who(a, "Bearer admin-secret-012345678", "10.0.0.1", "", "", "read-secret-0123456789")
                  .role == MP_ROLE_ADMIN);
    }

    TEST_CASE("protected mode: this machine administers, others get the anonymous role") {
        Authenticator a(AuthConfig{});
        CHECK(a.protectedMode());
        CHECK(a.anonymousRole() == MP_ROLE_PEER);
        CHECK(who(a, "", "127.0.0.1", "127.0.0.1:8667").role == MP_ROLE_ADMIN);
        CHECK(who(a, "", "127.3.4.5", "localhost:8667").principal == "loopback");
        CHECK(who(a, "", "::1", "[::1]:8667").role == MP_ROLE_ADMIN);
        CHECK(who(a, "", "::ffff:127.0.0.1", "").role == MP_ROLE_ADMIN);
        CHECK(who(a, "", "10.1.2.3", "10.1.2.4:8667").role == MP_ROLE_PEER);
        CHECK(who(a, "", "::ffff:10.1.2.3", "").role == MP_ROLE_PEER);
        // Browsers: a page of another site, or this address under a foreign name.
        CHECK(who(a, "", "127.0.0.1", "127.0.0.1:8667", "http://evil.example").role ==
              MP_ROLE_PEER);
        CHECK(who(a, "", "127.0.0.1", "evil.example:8667").role == MP_ROLE_PEER);
        CHECK(who(a, "", "127.0.0.1", "127.0.0.1:8667", "http://localhost:8667").role ==
              MP_ROLE_ADMIN);
        CHECK(who(a, "", "127.0.0.1", "127.0.0.1", "null").role == MP_ROLE_PEER);
        AuthConfig readOnly;
        readOnly.anonymousRole = MP_ROLE_READ;
        CHECK(who(Authenticator(readOnly), "", "10.1.2.3").role == MP_ROLE_READ);
    }

    TEST_CASE("the auth section: every mistake named with its line") {
        CHECK(parseError(kTokens).empty());
        CHECK(parseError("auth:\n  tokens:\n    - {name: a, role: read, token: short}\n")
                  .find("16 to 4096") != std::string::npos);
        CHECK(parseError("auth:\n  tokens:\n    - {name: a, role: boss, token: "
                         "0123456789abcdefgh}\n")
                  .find("not one of read, peer, admin") != std::string::npos);
        CHECK(parseError("auth:\n  tokens:\n    - {name: a, role: read, token: "
                         "0123456789abcdefgh}\n    - {name: a, role: admin, token: "
                         "0123456789abcdefgX}\n")
                  .find("used twice") != std::string::npos);
        CHECK(parseError("auth:\n  tokens:\n    - {role: read, token: 0123456789abcdefgh}\n")
                  .find("give each token a name") != std::string::npos);
        CHECK(parseError("auth:\n  tokens:\n    - {name: a, role: read, token: \"0123456789 "
                         "abcdefgh\"}\n")
                  .find("without spaces") != std::string::npos);
        CHECK(parseError("auth:\n  tokens:\n    - {name: a, role: read, file: /nonexistent}\n")
                  .find("t.yaml:3: auth.tokens[0].file: cannot read the token file") == 0);
        CHECK(parseError("auth:\n  tokens:\n    - {name: a, role: read, token: "
                         "0123456789abcdefgh}\n  cluster_token: a\n")
                  .find("role peer or admin") != std::string::npos);
        CHECK(parseError("auth:\n  cluster_token: nobody\n").find("cluster_token") !=
              std::string::npos);
        CHECK(parseError("auth:\n  anonymous: admin\n").find("anyone, read or peer") !=
              std::string::npos);
        CHECK(parseError("auth:\n  colour: blue\n").find("unknown key") != std::string::npos);
        // A secret never appears in a message.
        std::string e = parseError(
            "auth:\n  tokens:\n    - {name: a, role: read, token: "
            "secret-with space-x}\n");
        CHECK(e.find("secret-with") == std::string::npos);
    }

    TEST_CASE("cluster.token is an admin token that this node presents to its peers") {
        auto cfg =
            parseConfig("cluster:\n  token: legacy-token-0123456789\n", "t.yaml", Overrides{});
        REQUIRE(cfg.auth.tokens.size() == 1);
        CHECK(cfg.auth.tokens[0].name == "cluster");
        CHECK(cfg.auth.tokens[0].role == MP_ROLE_ADMIN);
        CHECK(cfg.auth.clusterToken == "cluster");
        CHECK(parseError("cluster:\n  token: short\n").find("cluster.token") != std::string::npos);
        CHECK(parseError("cluster:\n  token: legacy-token-0123456789\nauth:\n  tokens:\n    - "
                         "{name: cluster, role: read, token: 0123456789abcdefgh}\n")
                  .find("already has a token named 'cluster'") != std::string::npos);
        CHECK(parseError("serveraddress: example.com\n").find("not an IPv4 or IPv6") !=
              std::string::npos);
    }
}
