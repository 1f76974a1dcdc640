// SPDX-License-Identifier: Apache-2.0
// Helpers of the HTTP server that hold no state (see http_util.hpp).
#include "server/http_util.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>
#include <mp/sdk.hpp>

#include "server/http_server.hpp"

namespace mp::host {

bool percentDecode(std::string_view in, std::string& res) {
    res.clear();
    for (size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '+') {
            res += ' ';
        } else if (c == '%') {
            if (i + 2 >= in.size()) {
                return false;
            }
            int hi = hexDigit(in[i + 1]);
            int lo = hexDigit(in[i + 2]);
            if (hi < 0 || lo < 0) {
                return false;
            }
            res += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else {
            res += c;
        }
    }
    return true;
}

bool parseQuery(const std::string& query, std::multimap<std::string, std::string>& out) {
    auto decode = [](std::string_view in, std::string& res) { return percentDecode(in, res); };
    std::string_view q = query;
    while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view part = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
        if (part.empty()) {
            continue;
        }
        size_t eq = part.find('=');
        std::string key;
        std::string value;
        if (!decode(part.substr(0, eq), key)) {
            return false;
        }
        if (eq != std::string_view::npos && !decode(part.substr(eq + 1), value)) {
            return false;
        }
        out.emplace(std::move(key), std::move(value));
    }
    return true;
}

std::string errorJson(const std::string& msg) { return "{\"error\":" + mp::jsonString(msg) + "}"; }

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool listHas(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        if (iequals(item, token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

bool methodAllowed(uint32_t methods, const std::string& m) {
    return ((methods & MP_HTTP_GET) != 0 && (m == "GET" || m == "HEAD")) ||
           ((methods & MP_HTTP_POST) != 0 && m == "POST") ||
           ((methods & MP_HTTP_PUT) != 0 && m == "PUT") ||
           ((methods & MP_HTTP_DELETE) != 0 && m == "DELETE");
}

std::string allowHeader(uint32_t methods) {
    std::string out;
    for (auto [bit, names] : {std::pair<uint32_t, const char*>{MP_HTTP_GET, "GET, HEAD"},
                              {MP_HTTP_POST, "POST"},
                              {MP_HTTP_PUT, "PUT"},
                              {MP_HTTP_DELETE, "DELETE"}}) {
        if ((methods & bit) != 0) {
            out += (out.empty() ? "" : ", ") + std::string(names);
        }
    }
    return out;
}

int gate(const Caller& caller, uint32_t need) {
    need = need == MP_ROLE_DEFAULT ? MP_ROLE_ADMIN : need;
    if (need <= MP_ROLE_ANYONE) {
        return 0;
    }
    if (caller.badCredentials) {
        return 401;
    }
    if (caller.role >= need) {
        return 0;
    }
    return caller.principal == "anonymous" ? 401 : 403;
}

std::string gateMessage(int status, uint32_t need) {
    std::string role = roleName(need == MP_ROLE_DEFAULT ? MP_ROLE_ADMIN : need);
    return status == 401
               ? "a valid token is required (Authorization: Bearer TOKEN; role " + role + ")"
               : "this token's role is too low: this path needs the '" + role + "' role";
}

std::string httpDate() {
    char buf[64];
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
}

std::string stripParam(const std::string& q, std::string_view name) {
    std::string out;
    size_t start = 0;
    while (start <= q.size()) {
        size_t amp = q.find('&', start);
        std::string_view part(q.data() + start,
                              (amp == std::string::npos ? q.size() : amp) - start);
        // Compared decoded: "access%5Ftoken" is the same parameter to every query parser.
        std::string decoded;
        bool named = percentDecode(part.substr(0, part.find('=')), decoded) && decoded == name;
        if (!part.empty() && !named) {
            out += (out.empty() ? "" : "&") + std::string(part);
        }
        if (amp == std::string::npos) {
            break;
        }
        start = amp + 1;
    }
    return out;
}

bool plainPath(std::string_view path) {
    if (path.empty() || path[0] != '/') {
        return false;
    }
    for (size_t i = 0; i < path.size(); ++i) {
        auto c = static_cast<unsigned char>(path[i]);
        if (c < 0x20 || c == 0x7f || c == '\\') {
            return false;
        }
        if (c == '%' && i + 2 < path.size()) {
            std::string_view hex = path.substr(i + 1, 2);
            if (iequals(hex, "2e") || iequals(hex, "2f") || iequals(hex, "5c")) {
                return false;
            }
        }
    }
    size_t start = 1;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string_view::npos) {
            end = path.size();
        }
        std::string_view seg = path.substr(start, end - start);
        bool last = end == path.size();
        if (seg == "." || seg == ".." || (seg.empty() && !last)) {
            return false;
        }
        start = end + 1;
    }
    return true;
}

}  // namespace mp::host
