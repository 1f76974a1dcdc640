// SPDX-License-Identifier: Apache-2.0
// The broker settings every AMQP plugin shares (url, user, password, heartbeat_s,
// connect_timeout_ms, tls_ca_file, tls_cert_file, tls_key_file), read from its configuration in
// one way.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mp/amqp_connection.hpp>
#include <mp/amqp_url.hpp>
#include <mp/sdk.hpp>

// The broker properties every AMQP plugin declares, first in its table (endpointFrom() reads
// them; reconnect_max_ms is the plugin's to use):
//   const mp_property kProps[] = {MP_AMQP_BROKER_PROPERTIES, {...its own...}, {nullptr, ...}};
// clang-format off
#define MP_AMQP_BROKER_PROPERTIES \
    {"url", MP_PROP_STRING, 0, "amqp://127.0.0.1:5672/%2F", "broker: amqp://HOST[:PORT][/VHOST], or amqps:// for TLS (vhost percent-encoded, %2F is \"/\"; credentials go in user and password)", 0, 0, nullptr}, \
    {"user", MP_PROP_STRING, 0, "guest", "user name", 0, 0, nullptr}, \
    {"password", MP_PROP_STRING, MP_PROP_SECRET, "guest", "password", 0, 0, nullptr}, \
    {"tls_ca_file", MP_PROP_STRING, 0, "", "amqps://: CA certificates (PEM) the broker's certificate is verified against (empty: the system's)", 0, 0, nullptr}, \
    {"tls_cert_file", MP_PROP_STRING, 0, "", "amqps://: client certificate (PEM), with tls_key_file", 0, 0, nullptr}, \
    {"tls_key_file", MP_PROP_STRING, 0, "", "amqps://: the client certificate's private key (PEM)", 0, 0, nullptr}, \
    {"heartbeat_s", MP_PROP_INT, 0, "30", "AMQP heartbeat (0: none)", 0, 3600, nullptr}, \
    {"connect_timeout_ms", MP_PROP_INT, 0, "2000", "connect, login and each RPC", 1, 600000, nullptr}, \
    {"reconnect_max_ms", MP_PROP_INT, 0, "5000", "longest wait between connection attempts (backoff from 100 ms)", 100, 3600000, nullptr}
// clang-format on

namespace mp::amqp {

/// The endpoint of a plugin's `url`, `user`, `password`, `heartbeat_s` and `connect_timeout_ms`
/// properties; mp::Error for a URL it refuses (the URL itself is not quoted: it could hold
/// credentials).
inline Endpoint endpointFrom(const mp::Config& cfg) {
    Url u;
    std::string why;
    if (!parseUrl(cfg.str("url"), u, why)) {
        throw mp::Error("url: " + why);
    }
    Endpoint e;
    e.host = u.host;
    e.port = u.port;
    e.vhost = u.vhost;
    e.user = cfg.str("user");
    e.password = cfg.str("password");
    e.heartbeatS = static_cast<int>(cfg.i64("heartbeat_s"));
    e.connectTimeoutMs = static_cast<int>(cfg.i64("connect_timeout_ms"));
    e.tls = u.tls;
    e.caFile = cfg.str("tls_ca_file");
    e.certFile = cfg.str("tls_cert_file");
    e.keyFile = cfg.str("tls_key_file");
    if (e.certFile.empty() != e.keyFile.empty()) {
        throw mp::Error("tls_cert_file and tls_key_file: set both or neither");
    }
    if (!e.tls && !(e.caFile.empty() && e.certFile.empty())) {
        throw mp::Error("tls_*: TLS settings need an amqps:// url");
    }
    for (const std::string* f : {&e.caFile, &e.certFile, &e.keyFile}) {
        if (!f->empty() && ::access(f->c_str(), R_OK) != 0) {
            throw mp::Error("cannot read " + *f + ": " + std::strerror(errno));
        }
    }
    return e;
}

}  // namespace mp::amqp
