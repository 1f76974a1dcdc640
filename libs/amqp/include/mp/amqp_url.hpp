// SPDX-License-Identifier: Apache-2.0
// The broker's address: amqp://HOST[:PORT][/VHOST] (port 5672), or amqps:// for TLS (port
// 5671), the vhost percent-encoded ("%2F" is "/").
#pragma once

#include <cstdint>
#include <string>

namespace mp::amqp {

struct Url {
    std::string host;
    uint16_t port = 5672;
    std::string vhost = "/";
    bool tls = false;  // amqps://
};

/// False with `why` for anything else: another scheme, credentials in the URL (they belong in
/// the secret settings), no host, a path of more than one segment, a query or a fragment.
bool parseUrl(const std::string& url, Url& out, std::string& why);

}  // namespace mp::amqp
