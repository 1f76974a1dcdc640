// SPDX-License-Identifier: Apache-2.0
#include "server/http_parser.hpp"

#include <algorithm>
#include <cctype>

namespace mp::host::http {

namespace {

// RFC 9110 5.6.2: tchar.
bool isTokenChar(unsigned char c) {
    return std::isalnum(c) != 0 ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trimOws(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// True when the comma-separated list `value` has `token` (case-insensitive).
bool listHas(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        if (iequals(trimOws(value.substr(0, comma)), token)) {
            return true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    return false;
}

HeadResult fail(int status, std::string reason) {
    HeadResult r;
    r.state = Parse::Error;
    r.status = status;
    r.reason = std::move(reason);
    return r;
}

}  // namespace

std::string_view RequestHead::header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
        if (iequals(k, name)) {
            return v;
        }
    }
    return {};
}

bool RequestHead::has(std::string_view name) const {
    return std::any_of(headers.begin(), headers.end(),
                       [&](const auto& kv) { return iequals(kv.first, name); });
}

HeadResult parseHead(std::string_view in, RequestHead& out, const Limits& limits) {
    size_t end = in.find("\r\n\r\n");
    std::string_view head = in.substr(0, std::min(end, limits.maxHeadBytes + 1));
    // What has arrived must be able to begin a head: check the request line as soon as it is
    // whole (a garbage line is refused at once, not after the head limit).
    size_t lineEnd = head.find("\r\n");
    if (end == std::string_view::npos) {
        if (in.size() > limits.maxHeadBytes) {
            return fail(
                431, "request head larger than " + std::to_string(limits.maxHeadBytes) + " bytes");
        }
        if (lineEnd == std::string_view::npos) {
            // A bare LF, or a line already too long, is refused before the rest arrives.
            if (in.find('\n') != std::string_view::npos) {
                return fail(400, "lines end with CRLF");
            }
            if (in.size() > limits.maxTargetBytes + 32) {
                return fail(414, "request line too long");
            }
            return HeadResult{};
        }
    } else if (end + 4 > limits.maxHeadBytes) {
        return fail(431,
                    "request head larger than " + std::to_string(limits.maxHeadBytes) + " bytes");
    }
    out = RequestHead{};
    // Request line: METHOD SP TARGET SP HTTP/1.x
    std::string_view line = head.substr(0, lineEnd);
    size_t sp1 = line.find(' ');
    size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 || sp1 > 16 ||
        line.find(' ', sp2 + 1) != std::string_view::npos) {
        return fail(400, "malformed request line");
    }
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string_view version = line.substr(sp2 + 1);
    for (char c : method) {
        if (!isTokenChar(static_cast<unsigned char>(c))) {
            return fail(400, "malformed method");
        }
    }
    if (target.empty() || target.front() != '/' || target.size() > limits.maxTargetBytes) {
        return fail(target.size() > limits.maxTargetBytes ? 414 : 400,
                    "the target must be a path (origin form)");
    }
    for (char c : target) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) {
            return fail(400, "control characters in the target");
        }
    }
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(version[5]) ||
        version[6] != '.' || !std::isdigit(version[7])) {
        return fail(400, "malformed HTTP version");
    }
    if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
        return fail(505, "HTTP version not supported: use HTTP/1.1 or HTTP/1.0");
    }
    if (end == std::string_view::npos) {
        return HeadResult{};  // the line is fine; the headers are still coming
    }
    out.method = std::string(method);
    out.target = std::string(target);
    out.minorVersion = version[7] - '0';
    // Headers.
    std::string_view rest =
        lineEnd == std::string_view::npos ? std::string_view() : head.substr(lineEnd + 2);
    bool sawLength = false;
    std::string_view connection;
    while (!rest.empty()) {
        size_t eol = rest.find("\r\n");
        std::string_view h = rest.substr(0, eol);
        rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
        if (h.empty()) {
            return fail(400, "empty header line");
        }
        if (h.front() == ' ' || h.front() == '\t') {
            return fail(400, "folded header lines are not accepted");
        }
        if (h.find('\n') != std::string_view::npos || h.find('\r') != std::string_view::npos) {
            return fail(400, "lines end with CRLF");
        }
        size_t colon = h.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            return fail(400, "malformed header line");
        }
        std::string_view name = h.substr(0, colon);
        for (char c : name) {
            if (!isTokenChar(static_cast<unsigned char>(c))) {
                return fail(400, "malformed header name");  // also "Name :" (RFC 9112 5.1)
            }
        }
        std::string_view value = trimOws(h.substr(colon + 1));
        for (char c : value) {
            auto u = static_cast<unsigned char>(c);
            if ((u < 0x20 && u != '\t') || u == 0x7f) {
                return fail(400, "control characters in a header value");
            }
        }
        if (out.headers.size() >= limits.maxHeaders) {
            return fail(431, "more than " + std::to_string(limits.maxHeaders) + " headers");
        }
        if (iequals(name, "Content-Length")) {
            uint64_t n = 0;
            if (value.empty() || value.size() > 15) {
                return fail(400, "malformed Content-Length");
            }
            for (char c : value) {
                if (!std::isdigit(static_cast<unsigned char>(c))) {
                    return fail(400, "malformed Content-Length");
                }
                n = n * 10 + static_cast<uint64_t>(c - '0');
            }
            if (sawLength && n != out.contentLength) {
                return fail(400, "two different Content-Length headers");
            }
            sawLength = true;
            out.hasLength = true;
            out.contentLength = n;
        } else if (iequals(name, "Transfer-Encoding")) {
            if (!iequals(value, "chunked") || out.chunked) {
                return fail(501, "only Transfer-Encoding: chunked is supported");
            }
            out.chunked = true;
        } else if (iequals(name, "Connection")) {
            connection = value;
        } else if (iequals(name, "Expect")) {
            if (!iequals(value, "100-continue")) {
                return fail(417, "only Expect: 100-continue is supported");
            }
            out.expectContinue = true;
        }
        out.headers.emplace_back(std::string(name), std::string(value));
    }
    if (out.chunked && out.hasLength) {
        return fail(400, "Content-Length and Transfer-Encoding together");
    }
    if (out.minorVersion == 0 && out.chunked) {
        return fail(400, "chunked bodies need HTTP/1.1");
    }
    out.keepAlive =
        out.minorVersion == 1 ? !listHas(connection, "close") : listHas(connection, "keep-alive");
    HeadResult r;
    r.state = Parse::Done;
    r.consumed = end + 4;
    return r;
}

size_t ChunkedDecoder::feed(std::string_view in, std::string& body) {
    size_t i = 0;
    auto bad = [&](int status) {
        error_ = status;
        return i;
    };
    while (i < in.size() && state_ != State::Done && error_ == 0) {
        char c = in[i];
        switch (state_) {
            case State::Size: {
                int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                        : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                        : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                                    : -1;
                if (v >= 0) {
                    if (++digits_ > 15) {
                        return bad(400);
                    }
                    left_ = left_ * 16 + static_cast<uint64_t>(v);
                    ++i;
                } else if (digits_ == 0) {
                    return bad(400);
                } else if (c == ';' || c == ' ' || c == '\t') {
                    state_ = State::Ext;
                    ++i;
                } else if (c == '\r') {
                    state_ = State::SizeLf;
                    ++i;
                } else {
                    return bad(400);
                }
                if (left_ > maxBody_ || body.size() + left_ > maxBody_) {
                    return bad(413);
                }
                break;
            }
            case State::Ext:  // chunk extensions: ignored, bounded
                if (c == '\r') {
                    state_ = State::SizeLf;
                } else if (c == '\n' || ++lineBytes_ > 4096) {
                    return bad(400);
                }
                ++i;
                break;
            case State::SizeLf:
                if (c != '\n') {
                    return bad(400);
                }
                ++i;
                lineBytes_ = 0;
                digits_ = 0;
                if (left_ == 0) {
                    state_ = State::Trailer;
                    trailerEmpty_ = true;
                } else {
                    state_ = State::Data;
                }
                break;
            case State::Data: {
                size_t n = static_cast<size_t>(std::min<uint64_t>(left_, in.size() - i));
                body.append(in.data() + i, n);
                i += n;
                left_ -= n;
                if (left_ == 0) {
                    state_ = State::DataCr;
                }
                break;
            }
            case State::DataCr:
                if (c != '\r') {
                    return bad(400);
                }
                state_ = State::DataLf;
                ++i;
                break;
            case State::DataLf:
                if (c != '\n') {
                    return bad(400);
                }
                state_ = State::Size;
                ++i;
                break;
            case State::Trailer:  // trailer fields: ignored, bounded; an empty line ends
                if (c == '\r') {
                    state_ = State::TrailerLf;
                } else if (c == '\n' || ++lineBytes_ > 8192) {
                    return bad(400);
                } else {
                    trailerEmpty_ = false;
                }
                ++i;
                break;
            case State::TrailerLf:
                if (c != '\n') {
                    return bad(400);
                }
                ++i;
                if (trailerEmpty_) {
                    state_ = State::Done;
                } else {
                    state_ = State::Trailer;
                    trailerEmpty_ = true;
                }
                break;
            case State::Done:
                break;
        }
    }
    return i;
}

const char* reasonPhrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 101:
            return "Switching Protocols";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 417:
            return "Expectation Failed";
        case 426:
            return "Upgrade Required";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Unknown";
    }
}

}  // namespace mp::host::http
