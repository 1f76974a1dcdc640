// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the HTTP request head parser and the chunked body decoder, fed as a client
// would, in pieces of every size. Checks: the parser never reads past its input, a head it
// accepts is within the limits and ends where it says, the same bytes in two pieces give the
// same answer as in one, and a chunked body never exceeds its bound.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/http_parser.hpp"

namespace http = mp::host::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) {
        return 0;
    }
    size_t split = data[0] % 64;
    std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
    http::Limits lim;
    lim.maxHeadBytes = 2048;
    lim.maxHeaders = 20;
    lim.maxTargetBytes = 512;
    http::RequestHead head;
    http::HeadResult whole = http::parseHead(in, head, lim);
    if (whole.state == http::Parse::Done) {
        if (whole.consumed > in.size() || whole.consumed > lim.maxHeadBytes ||
            in.compare(whole.consumed - 4, 4, "\r\n\r\n") != 0 ||
            head.headers.size() > lim.maxHeaders || head.target.empty() ||
            head.target.front() != '/' || (head.chunked && head.hasLength)) {
            __builtin_trap();
        }
        // The body, when chunked: bounded, whatever the pieces.
        if (head.chunked) {
            std::string rest = in.substr(whole.consumed);
            http::ChunkedDecoder one(1000);
            http::ChunkedDecoder two(1000);
            std::string b1, b2;
            size_t used = one.feed(rest, b1);
            size_t cut = std::min(rest.size(), split);
            size_t used2 = two.feed(std::string_view(rest).substr(0, cut), b2);
            if (used2 == cut && two.error() == 0 && !two.done()) {
                used2 += two.feed(std::string_view(rest).substr(cut), b2);
            }
            if (used > rest.size() || b1.size() > 1000 || b2.size() > 1000 ||
                (one.error() == 0 && two.error() == 0 && one.done() != two.done()) ||
                (one.done() && two.done() && (b1 != b2 || used != used2))) {
                __builtin_trap();
            }
        }
    }
    // A prefix is never "done" with a different length, and never an error when the whole is
    // fine (the parser refuses early only what can never become a valid head).
    if (split < in.size()) {
        http::RequestHead h2;
        http::HeadResult part = http::parseHead(std::string_view(in).substr(0, split), h2, lim);
        if (part.state == http::Parse::Done &&
            (whole.state != http::Parse::Done || part.consumed != whole.consumed)) {
            __builtin_trap();
        }
        if (part.state == http::Parse::Error && whole.state == http::Parse::Done) {
            __builtin_trap();
        }
    }
    return 0;
}
