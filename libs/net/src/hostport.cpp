// SPDX-License-Identifier: Apache-2.0
#include "mp/hostport.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/URI.h>

#include <cctype>

namespace mp::net {

std::string HostPort::text() const {
    bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<HostPort> parseHostPort(std::string_view text, HostKind kind, size_t maxLength) {
    if (text.empty() || text.size() > maxLength) {
        return std::nullopt;
    }
    // Only the characters of a host (name, IPv4, bracketed IPv6) and a port: no user, path,
    // query or fragment can get through, and Poco::URI needs to decide nothing else.
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (!(std::isalnum(u) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']')) {
            return std::nullopt;
        }
    }
    HostPort out;
    try {
        Poco::URI uri("mp://" + std::string(text));
        out.host = uri.getHost();
        if (!uri.getUserInfo().empty() || !uri.getPath().empty() || out.host.empty() ||
            uri.getPort() == 0) {
            return std::nullopt;
        }
        out.port = uri.getPort();
    } catch (const Poco::Exception&) {
        return std::nullopt;  // a port that is not a number or out of range, a broken bracket
    }
    // The port must be written (an unknown scheme has no default) and be the text's end.
    const std::string suffix = ":" + std::to_string(out.port);
    if (text.size() <= suffix.size() || text.substr(text.size() - suffix.size()) != suffix) {
        return std::nullopt;
    }
    Poco::Net::IPAddress ip;
    bool literal = Poco::Net::IPAddress::tryParse(out.host, ip);
    bool bracketed = text.front() == '[';
    if (bracketed != (literal && ip.family() == Poco::Net::AddressFamily::IPv6)) {
        return std::nullopt;  // "[name]:1", or an IPv6 address without brackets
    }
    if (!literal && (kind != HostKind::Any || out.host.find(':') != std::string::npos)) {
        return std::nullopt;
    }
    if (kind == HostKind::Ipv4 && ip.family() != Poco::Net::AddressFamily::IPv4) {
        return std::nullopt;
    }
    return out;
}

std::string hostOf(std::string_view text) {
    if (auto hp = parseHostPort(text)) {
        return hp->host;
    }
    return std::string(text);
}

}  // namespace mp::net
