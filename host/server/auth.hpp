// SPDX-License-Identifier: Apache-2.0
// Who may call what: bearer tokens with roles, one model for every route and websocket of the
// host's server (docs/security.md).
#pragma once

#include <mp/abi.h>

#include <array>
#include <cstdint>
#include <mp/sdk.hpp>  // mp::roleName
#include <string>
#include <string_view>
#include <vector>

namespace mp::host {

/// One access token of the `auth:` section.
struct TokenConfig {
    std::string name;    // shown in logs as who did what; never the secret
    uint32_t role = 0;   // MP_ROLE_READ .. MP_ROLE_ADMIN
    std::string secret;  // at least 16 bytes
};

/// The `auth:` section, validated.
struct AuthConfig {
    std::vector<TokenConfig> tokens;
    std::string clusterToken;         // name of the token this node presents to other nodes
    uint32_t anonymousRole = 0;       // role of callers without a token; 0: the mode's default
    bool queryTokenOnUpgrade = true;  // ?access_token= on websocket upgrades (browsers)
};

/// MP_ROLE_* from "anyone", "read", "peer", "admin"; 0 when unknown.
uint32_t roleFromName(std::string_view name);

/// The identity of one request, as the server established it.
struct Caller {
    uint32_t role = MP_ROLE_ANYONE;
    std::string principal = "anonymous";
    bool badCredentials = false;  // a token was presented and matched none
};

/// What the server knows about a request when it authenticates it.
struct RequestFacts {
    std::string_view authorization;  // the Authorization header ("" when absent)
    std::string_view queryToken;     // access_token= of a websocket upgrade ("" when absent)
    std::string_view remoteIp;       // the socket's peer address, no port
    std::string_view host;           // the Host header
    std::string_view origin;         // the Origin header ("" when absent)
};

class Authenticator {
  public:
    explicit Authenticator(AuthConfig config);

    /// Tokens configured: every role needs its token. None (protected mode): loopback callers
    /// are admin, others get the anonymous role (peer unless configured).
    bool protectedMode() const { return tokens_.empty(); }
    Caller identify(const RequestFacts& facts) const;
    /// "Bearer <secret>" of auth.cluster_token, or "" (a secret: never log it).
    const std::string& peerAuthorization() const { return peerAuthorization_; }
    /// One line for the start-up log: the mode and what it means (no secrets).
    std::string summary(const std::string& listenAddress) const;
    uint32_t anonymousRole() const { return anonymousRole_; }
    bool queryTokenOnUpgrade() const { return queryToken_; }

  private:
    struct Token {
        std::string name;
        uint32_t role;
        std::array<unsigned char, 32> digest;
    };
    std::vector<Token> tokens_;
    uint32_t anonymousRole_;
    bool queryToken_;
    std::string peerAuthorization_;
};

/// True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
bool isLoopback(std::string_view ip);
/// A Host or Origin naming this machine only: localhost, 127.x.y.z, [::1] (any port).
bool namesLoopback(std::string_view hostOrOrigin);

}  // namespace mp::host
