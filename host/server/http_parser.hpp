// SPDX-License-Identifier: Apache-2.0
// HTTP/1.1 request heads and chunked bodies, parsed from bytes a client sent (RFC 9112).
// Pure functions over buffers: no I/O, bounded, strict where leniency lets two parsers disagree
// about where a request ends (request smuggling): CRLF line ends, no folded headers, one
// Content-Length, Transfer-Encoding only "chunked" and never with a Content-Length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mp::host::http {

struct Limits {
    size_t maxHeadBytes = 16 * 1024;  // request line and headers together
    size_t maxHeaders = 100;
    size_t maxTargetBytes = 8 * 1024;
};

struct RequestHead {
    std::string method;                                        // "GET"
    std::string target;                                        // "/path?query" (origin form only)
    int minorVersion = 1;                                      // HTTP/1.0 or HTTP/1.1
    std::vector<std::pair<std::string, std::string>> headers;  // names as sent
    bool chunked = false;
    bool hasLength = false;
    uint64_t contentLength = 0;
    bool keepAlive = true;  // after this request (Connection header and version)
    bool expectContinue = false;

    /// The first header of that name (case-insensitive), or "" when absent.
    std::string_view header(std::string_view name) const;
    bool has(std::string_view name) const;
};

enum class Parse { Incomplete, Done, Error };

struct HeadResult {
    Parse state = Parse::Incomplete;
    size_t consumed = 0;  // Done: bytes of the head, the empty line included
    int status = 0;       // Error: 400, 431, 501 or 505
    std::string reason;   // Error: one line for the client
};

/// Parses a request head from the start of `in`. Incomplete until "\r\n\r\n" arrives; an error
/// as soon as what arrived cannot begin a valid head (a bad method, an overlong line...).
HeadResult parseHead(std::string_view in, RequestHead& out, const Limits& limits = {});

/// A chunked body, fed in pieces: decoded data is appended to `body`, bounded by `maxBody`.
class ChunkedDecoder {
  public:
    explicit ChunkedDecoder(size_t maxBody) : maxBody_(maxBody) {}
    /// Consumes from `in`; returns how many bytes it used. After it, done() or error() may hold.
    size_t feed(std::string_view in, std::string& body);
    bool done() const { return state_ == State::Done; }
    /// 0, or the status to answer: 400 (malformed) or 413 (larger than maxBody).
    int error() const { return error_; }

  private:
    enum class State { Size, Ext, SizeLf, Data, DataCr, DataLf, Trailer, TrailerLf, Done };
    State state_ = State::Size;
    size_t maxBody_;
    uint64_t left_ = 0;
    int digits_ = 0;
    size_t lineBytes_ = 0;  // bytes of the current size or trailer line (bounded)
    bool trailerEmpty_ = true;
    int error_ = 0;
};

/// The reason phrase of a status code ("Not Found"), "Unknown" for codes it does not know.
const char* reasonPhrase(int status);

}  // namespace mp::host::http
