// SPDX-License-Identifier: Apache-2.0
#include "server/auth.hpp"

#include <Poco/Net/IPAddress.h>
#include <Poco/SHA2Engine.h>

#include <algorithm>
#include <cstring>

namespace mp::host {

namespace {

std::array<unsigned char, 32> digestOf(std::string_view secret) {
    Poco::SHA2Engine sha(Poco::SHA2Engine::SHA_256);
    sha.update(secret.data(), static_cast<unsigned>(secret.size()));
    const Poco::DigestEngine::Digest& d = sha.digest();
    std::array<unsigned char, 32> out{};
    std::copy_n(d.begin(), std::min<size_t>(d.size(), out.size()), out.begin());
    return out;
}

// Constant-time equality of two digests: the time does not depend on where they differ.
bool sameDigest(const std::array<unsigned char, 32>& a, const std::array<unsigned char, 32>& b) {
    unsigned diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff |= static_cast<unsigned>(a[i] ^ b[i]);
    }
    return diff == 0;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool iequalsPrefix(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) {
        return false;
    }
    for (size_t i = 0; i < prefix.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(s[i])) !=
            std::tolower(static_cast<unsigned char>(prefix[i]))) {
            return false;
        }
    }
    return true;
}

}  // namespace

uint32_t roleFromName(std::string_view name) {
    if (name == "anyone" || name == "none") {
        return MP_ROLE_ANYONE;
    }
    if (name == "read") {
        return MP_ROLE_READ;
    }
    if (name == "peer") {
        return MP_ROLE_PEER;
    }
    if (name == "admin") {
        return MP_ROLE_ADMIN;
    }
    return 0;
}

bool isLoopback(std::string_view ip) {
    Poco::Net::IPAddress a;
    if (!Poco::Net::IPAddress::tryParse(std::string(ip), a)) {
        return false;
    }
    if (a.isLoopback()) {
        return true;
    }
    // ::ffff:127.x.y.z (a v4 client on a dual-stack socket).
    return a.isIPv4Mapped() && ip.size() > 7 && iequalsPrefix(ip, "::ffff:127.");
}

bool namesLoopback(std::string_view v) {
    // An Origin is scheme://host[:port]; a Host is host[:port].
    size_t scheme = v.find("://");
    if (scheme != std::string_view::npos) {
        v.remove_prefix(scheme + 3);
    }
    std::string_view host;
    if (!v.empty() && v.front() == '[') {
        size_t close = v.find(']');
        if (close == std::string_view::npos) {
            return false;
        }
        host = v.substr(1, close - 1);
    } else {
        host = v.substr(0, v.find(':'));
    }
    if (host.empty()) {
        return false;
    }
    std::string lower(host);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "localhost" || lower == "localhost.") {
        return true;
    }
    Poco::Net::IPAddress a;
    return Poco::Net::IPAddress::tryParse(lower, a) && a.isLoopback();
}

Authenticator::Authenticator(AuthConfig config) : queryToken_(config.queryTokenOnUpgrade) {
    for (auto& t : config.tokens) {
        tokens_.push_back(Token{t.name, t.role, digestOf(t.secret)});
        if (!config.clusterToken.empty() && t.name == config.clusterToken) {
            peerAuthorization_ = "Bearer " + t.secret;
        }
    }
    anonymousRole_ = config.anonymousRole != 0 ? config.anonymousRole
                     : tokens_.empty()         ? MP_ROLE_PEER
                                               : MP_ROLE_ANYONE;
}

Caller Authenticator::identify(const RequestFacts& f) const {
    Caller c;
    c.role = anonymousRole_;
    std::string_view presented;
    std::string_view auth = trim(f.authorization);
    if (!auth.empty()) {
        if (iequalsPrefix(auth, "bearer ")) {
            presented = trim(auth.substr(7));
        }
        if (presented.empty()) {
            c.badCredentials = true;  // another scheme, or "Bearer" alone
            return c;
        }
    } else if (!f.queryToken.empty()) {
        presented = f.queryToken;
    }
    if (!presented.empty()) {
        // Every token is compared, whichever matches: the time says nothing about which.
        auto d = digestOf(presented);
        const Token* match = nullptr;
        for (const auto& t : tokens_) {
            if (sameDigest(d, t.digest) && match == nullptr) {
                match = &t;
            }
        }
        if (match == nullptr) {
            c.badCredentials = true;
            return c;
        }
        c.role = std::max(match->role, anonymousRole_);
        c.principal = match->name;
        return c;
    }
    // Protected mode: this machine's own callers administer it, unless the request comes
    // through a browser page of another site (an Origin elsewhere: cross-site request forgery)
    // or under a name that is not this machine's (a Host elsewhere: DNS rebinding).
    if (protectedMode() && isLoopback(f.remoteIp) && (f.host.empty() || namesLoopback(f.host)) &&
        (f.origin.empty() || namesLoopback(f.origin))) {
        c.role = MP_ROLE_ADMIN;
        c.principal = "loopback";
    }
    return c;
}

std::string Authenticator::summary(const std::string& listen) const {
    if (protectedMode()) {
        return "auth: no tokens configured (protected mode): admin routes answer callers on this "
               "machine only; anyone who can reach " +
               listen + " has the '" + roleName(anonymousRole_) + "' role (reports, metrics" +
               (anonymousRole_ >= MP_ROLE_PEER ? ", and taking part in the cluster" : "") +
               "). Set auth.tokens to require tokens (docs/security.md)";
    }
    std::string names;
    for (const auto& t : tokens_) {
        names += (names.empty() ? "" : ", ") + t.name + " (" + roleName(t.role) + ")";
    }
    return "auth: " + std::to_string(tokens_.size()) + " token(s): " + names +
           "; callers without a token: " + roleName(anonymousRole_) +
           (peerAuthorization_.empty() ? "" : "; this node presents its cluster token to peers");
}

}  // namespace mp::host
