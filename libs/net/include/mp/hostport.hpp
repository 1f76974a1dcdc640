// SPDX-License-Identifier: Apache-2.0
// "host:port" as every part of the project writes and reads it: one parser (Poco::URI for the
// split, Poco::Net::IPAddress for literal addresses), no name resolution.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mp::net {

struct HostPort {
    std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
    uint16_t port = 0;
    /// "host:port", with brackets around an IPv6 address.
    std::string text() const;
};

enum class HostKind {
    Any,  // a DNS name or a literal address
    Ip,   // a literal IPv4 or IPv6 address
    Ipv4  // a literal IPv4 address
};

/// Parses "host:port" or "[v6]:port": a port 1..65535 is required; a scheme, user, path, query
/// or fragment is refused, and so is anything longer than `maxLength`. nullopt when it is not
/// one.
std::optional<HostPort> parseHostPort(std::string_view text, HostKind kind = HostKind::Any,
                                      size_t maxLength = 300);

/// The host part of "host:port" (or the text itself when it has no port): "[::1]:3306" -> "::1".
std::string hostOf(std::string_view text);

}  // namespace mp::net
