// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the RESP2 parser (libs/redis), what a Redis server (or anything answering on its
// port) sends. With the default limits and with small ones the fuzzer can reach:
//   - parse() of the whole input, and of the replies one after the other (pipelined);
//   - the incremental Parser fed the whole input, one byte at a time, and split in two at every
//     position (every position up to kSplitAll bytes, then a stride): the same replies and the
//     same error, whatever the pieces;
//   - a reply parsed is written back by encodeReply() and parses to the same reply, in no more
//     bytes, within the same limits; and what parses within the small limits parses the same
//     within the defaults.
#include <cstddef>
#include <cstdint>
#include <mp/redis.hpp>
#include <string>
#include <string_view>
#include <vector>

using mp::redis::Limits;
using mp::redis::Reply;

namespace {

constexpr size_t kSplitAll = 1024;

/// The replies one after the other, and whether an error ended them.
struct Outcome {
    std::vector<Reply> replies;
    bool error = false;
    size_t left = 0;  // bytes after the last reply (without an error)
    bool operator==(const Outcome&) const = default;
};

Outcome stateless(std::string_view in, const Limits& lim) {
    Outcome o;
    size_t consumed = 0;
    try {
        for (;;) {
            Reply r;
            const size_t n = mp::redis::parse(in.substr(consumed), r, lim);
            if (n == 0) {
                break;
            }
            if (n > in.size() - consumed) {
                __builtin_trap();  // took more than it was given
            }
            consumed += n;
            o.replies.push_back(std::move(r));
        }
        o.left = in.size() - consumed;
    } catch (const mp::redis::ProtocolError&) {
        o.error = true;
    }
    return o;
}

/// The incremental parser fed `in` in pieces of `piece` bytes (0: all at once).
Outcome incremental(std::string_view in, size_t piece, const Limits& lim) {
    Outcome o;
    mp::redis::Parser p(lim);
    const size_t step = piece == 0 ? in.size() : piece;
    size_t fed = 0;
    try {
        do {
            const std::string_view part = in.substr(fed, step);
            p.feed(part);
            fed += part.size();
            Reply r;
            while (p.next(r)) {
                o.replies.push_back(r);
            }
        } while (fed < in.size());
        o.left = p.buffered();
    } catch (const mp::redis::ProtocolError&) {
        o.error = true;
    }
    return o;
}

/// The first reply of `in` (`firstLen` bytes, 0 when there is none), with the parser given
/// `in[0, k)` first and then the rest.
void split(std::string_view in, size_t k, const Limits& lim, const Outcome& whole,
           size_t firstLen) {
    mp::redis::Parser p(lim);
    Reply r;
    const bool firstComplete = firstLen > 0 && firstLen <= k;
    bool got = false;
    bool threw = false;
    try {
        p.feed(in.substr(0, k));
        got = p.next(r);
        if (got != firstComplete) {
            __builtin_trap();  // a reply before all its bytes came, or not when they had
        }
        if (!got) {
            p.feed(in.substr(k));
            got = p.next(r);
        }
    } catch (const mp::redis::ProtocolError&) {
        threw = true;
    }
    // The first reply's fate is the same in two pieces as in one.
    const bool firstError = whole.replies.empty() && whole.error;
    if (threw != firstError || got != !whole.replies.empty()) {
        __builtin_trap();
    }
    if (got && !(r == whole.replies[0])) {
        __builtin_trap();
    }
}

void roundTrip(const Outcome& o, std::string_view in, const Limits& lim) {
    size_t off = 0;
    for (const Reply& r : o.replies) {
        Reply again;
        const size_t n = mp::redis::parse(in.substr(off), again, lim);
        off += n;
        const std::string enc = mp::redis::encodeReply(r);
        Reply back;
        size_t m = 0;
        try {
            m = mp::redis::parse(enc, back, lim);
        } catch (const mp::redis::ProtocolError&) {
            __builtin_trap();  // what parsed within the limits is written within them
        }
        if (m != enc.size() || !(back == r) || enc.size() > n) {
            __builtin_trap();
        }
    }
}

void check(std::string_view in, const Limits& lim) {
    const Outcome whole = stateless(in, lim);
    roundTrip(whole, in, lim);
    if (!(incremental(in, 0, lim) == whole) || !(incremental(in, 1, lim) == whole) ||
        !(incremental(in, 7, lim) == whole)) {
        __builtin_trap();
    }
    size_t firstLen = 0;
    if (!whole.replies.empty()) {
        Reply first;
        firstLen = mp::redis::parse(in, first, lim);
    }
    const size_t stride = in.size() <= kSplitAll ? 1 : in.size() / kSplitAll + 1;
    for (size_t k = 0; k <= in.size(); k += stride) {
        split(in, k, lim, whole, firstLen);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    Limits small;
    small.maxBulk = 16;
    small.maxElements = 8;
    small.maxDepth = 3;
    small.maxReplyBytes = 64;
    const Limits defaults;
    check(in, defaults);
    check(in, small);
    // Stricter limits only take away: what they parse, the defaults parse the same.
    const Outcome a = stateless(in, small);
    const Outcome b = stateless(in, defaults);
    if (b.replies.size() < a.replies.size()) {
        __builtin_trap();
    }
    for (size_t i = 0; i < a.replies.size(); ++i) {
        if (!(a.replies[i] == b.replies[i])) {
            __builtin_trap();
        }
    }
    return 0;
}
