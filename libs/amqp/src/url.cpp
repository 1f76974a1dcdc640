// SPDX-License-Identifier: Apache-2.0
#include <Poco/Exception.h>
#include <Poco/URI.h>

#include <mp/amqp_url.hpp>

namespace mp::amqp {

namespace {

bool parse(const std::string& url, Url& out, std::string& why) {
    Poco::URI uri(url);
    if (uri.getScheme() != "amqp" && uri.getScheme() != "amqps") {
        why = "the scheme must be amqp:// or amqps:// (TLS)";
        return false;
    }
    out.tls = uri.getScheme() == "amqps";
    if (!uri.getUserInfo().empty()) {
        why = "put credentials in user and password, not in the URL";
        return false;
    }
    if (uri.getHost().empty()) {
        why = "no host";
        return false;
    }
    if (!uri.getQuery().empty() || !uri.getFragment().empty()) {
        why = "no query or fragment is understood";
        return false;
    }
    out.host = uri.getHost();
    out.port = uri.getSpecifiedPort() != 0 ? uri.getSpecifiedPort() : out.tls ? 5671 : 5672;
    // The vhost is the raw path without its leading '/', percent-decoded afterwards, so that
    // "/%2F" is the vhost "/" and "/a/b" (two segments) is refused; no path is "/".
    size_t authority = url.find("://") + 3;
    size_t slash = url.find('/', authority);
    std::string raw = slash == std::string::npos ? "" : url.substr(slash);
    if (raw.empty() || raw == "/") {
        out.vhost = "/";
        return true;
    }
    if (raw.find('/', 1) != std::string::npos) {
        why = "the path is one vhost (\"/%2F\" for \"/\")";
        return false;
    }
    std::string decoded;
    Poco::URI::decode(raw.substr(1), decoded);
    if (decoded.empty()) {
        why = "empty vhost";
        return false;
    }
    out.vhost = decoded;
    return true;
}

}  // namespace

bool parseUrl(const std::string& url, Url& out, std::string& why) {
    try {
        return parse(url, out, why);
    } catch (const Poco::Exception&) {  // Poco decodes lazily: getQuery() may throw too
        why = "not a URL (bad syntax or percent-encoding)";  // Poco's text may quote a password
        return false;
    }
}

}  // namespace mp::amqp
