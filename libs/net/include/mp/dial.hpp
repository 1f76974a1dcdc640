// SPDX-License-Identifier: Apache-2.0
// A TCP connection to host:port within a time limit: every address the name resolves to is
// tried in turn, each with a non-blocking connect and a poll. One implementation for the
// project's blocking clients (MySQL, Redis).
#pragma once

#include <cstdint>
#include <string>

namespace mp::net {

/// The connected socket (non-blocking, close-on-exec, TCP_NODELAY), or -1 with the reason in
/// `why` ("cannot resolve the host: ...", "timed out after N ms", "Connection refused"...).
int dial(const std::string& host, uint16_t port, int timeoutMs, std::string& why);

}  // namespace mp::net
