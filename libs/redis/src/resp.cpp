// SPDX-License-Identifier: Apache-2.0
// RESP2: the encoder, and the parser in two passes. The scan checks the bytes and the limits
// and finds where a reply ends, allocating nothing (but the stack of open arrays, at most
// maxDepth deep); it can stop at any byte and resume there. Only when the reply is complete
// does the build read it again into a Reply, from bytes already checked.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mp/redis.hpp>

namespace mp::redis {
namespace {

// A length or integer line: at most a sign and 19 digits, with room for leading zeros.
constexpr size_t kMaxNumberLine = 32;

void appendLength(std::string& out, char type, size_t n) {
    out += type;
    out += std::to_string(n);
    out += "\r\n";
}

std::string byteName(char c) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
    return hex;
}

/// A signed decimal of a length or integer line.
int64_t toInt(std::string_view s) {
    const bool neg = !s.empty() && s[0] == '-';
    if (neg) {
        s.remove_prefix(1);
    }
    if (s.empty()) {
        throw ProtocolError("RESP: empty number");
    }
    // The magnitude, up to 2^63 for a negative number.
    const uint64_t max = neg ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            throw ProtocolError("RESP: not a number (byte " + byteName(c) + ")");
        }
        const auto d = static_cast<uint64_t>(c - '0');
        if (v > (max - d) / 10) {
            throw ProtocolError("RESP: number out of range");
        }
        v = v * 10 + d;
    }
    if (!neg) {
        return static_cast<int64_t>(v);
    }
    return v == uint64_t{1} << 63 ? INT64_MIN : -static_cast<int64_t>(v);
}

/// Scans `r` (a reply's bytes from its first, possibly not all of them yet) from where `s`
/// stopped: the reply's length when it is complete in `r`, 0 when more bytes are needed.
size_t scan(std::string_view r, Parser::Scan& s, const Limits& lim) {
    for (;;) {
        // One element at s.pos: its type byte, its line, a bulk's data.
        if (s.pos >= r.size()) {
            return 0;
        }
        const char type = r[s.pos];
        size_t maxLine = kMaxNumberLine;
        switch (type) {
            case '+':
            case '-':
                maxLine = lim.maxBulk;
                break;
            case ':':
            case '$':
            case '*':
                break;
            default:
                throw ProtocolError("RESP: unknown type byte " + byteName(type) +
                                    (std::strchr("_,#!=(%~>|", type) != nullptr && type != '\0'
                                         ? " (RESP3: not spoken here)"
                                         : " (not a Redis server?)"));
        }
        // The CR must be at most maxLine bytes after the type byte, and its LF within the
        // reply's limit: `crLast` is the last offset it may have.
        const size_t body = s.pos + 1;
        size_t crLast = maxLine > SIZE_MAX - body ? SIZE_MAX : body + maxLine;
        if (lim.maxReplyBytes < 2) {
            throw ProtocolError("RESP: reply longer than max_reply_bytes");
        }
        crLast = std::min(crLast, lim.maxReplyBytes - 2);
        const size_t from = std::max(s.lineFrom, body);
        const size_t to = std::min(r.size(), crLast + 1);  // search [from, to)
        size_t cr = std::string_view::npos;
        for (size_t i = from; i < to; ++i) {
            if (r[i] == '\r' || r[i] == '\n') {
                cr = i;
                break;
            }
        }
        if (cr == std::string_view::npos) {
            if (to == crLast + 1) {
                throw ProtocolError(maxLine == kMaxNumberLine
                                        ? "RESP: length line too long"
                                        : "RESP: line longer than the limits");
            }
            s.lineFrom = r.size();
            return 0;
        }
        if (r[cr] == '\n') {
            throw ProtocolError("RESP: LF without CR");
        }
        s.lineFrom = cr;
        if (cr + 1 >= r.size()) {
            return 0;
        }
        if (r[cr + 1] != '\n') {
            throw ProtocolError("RESP: CR without LF");
        }
        const std::string_view line = r.substr(body, cr - body);
        size_t end = cr + 2;  // of this element, when it has no elements of its own
        if (type == ':') {
            (void)toInt(line);
        } else if (type == '$' || type == '*') {
            const int64_t n = toInt(line);
            if (n < -1) {
                throw ProtocolError("RESP: negative length " + std::to_string(n));
            }
            if (n >= 0 && type == '$') {
                const auto len = static_cast<uint64_t>(n);
                if (len > lim.maxBulk) {
                    throw ProtocolError("RESP: bulk string of " + std::to_string(len) +
                                        " bytes, more than max_bulk " +
                                        std::to_string(lim.maxBulk));
                }
                if (len + 2 > lim.maxReplyBytes - end) {
                    throw ProtocolError("RESP: reply longer than max_reply_bytes " +
                                        std::to_string(lim.maxReplyBytes));
                }
                end += static_cast<size_t>(len) + 2;
                if (r.size() < end) {
                    return 0;  // the header is scanned again then (lineFrom is at its CR)
                }
                if (r[end - 2] != '\r' || r[end - 1] != '\n') {
                    throw ProtocolError("RESP: bulk string not followed by CRLF");
                }
            } else if (n >= 0) {  // an array
                const auto count = static_cast<uint64_t>(n);
                if (count > lim.maxElements || s.elements + count > lim.maxElements) {
                    throw ProtocolError("RESP: more than max_elements " +
                                        std::to_string(lim.maxElements) + " array elements");
                }
                if (s.open.size() + 1 > lim.maxDepth) {
                    throw ProtocolError("RESP: arrays nested deeper than max_depth " +
                                        std::to_string(lim.maxDepth));
                }
                s.elements += count;
                if (count > 0) {
                    s.open.push_back(count);
                    s.pos = end;
                    s.lineFrom = 0;
                    continue;
                }
            }
        }
        // The element ends at `end`: it counts in its array, which may end too, and so on.
        s.pos = end;
        s.lineFrom = 0;
        for (;;) {
            if (s.open.empty()) {
                return s.pos;
            }
            if (--s.open.back() > 0) {
                break;
            }
            s.open.pop_back();
        }
    }
}

/// Reads the checked bytes of a whole reply (scan() said where it ends) into `out`. No check
/// is needed here but the bounds of `r`, kept anyway; no recursion (an explicit stack).
void build(std::string_view r, Reply& out) {
    struct Open {
        Reply* array;
        uint64_t left;
    };
    std::vector<Open> stack;
    Reply* slot = &out;
    size_t pos = 0;
    for (;;) {
        const char type = r.at(pos);
        const size_t cr = r.find('\r', pos + 1);
        const std::string_view line = r.substr(pos + 1, cr - pos - 1);
        pos = cr + 2;
        *slot = Reply();
        bool opened = false;
        switch (type) {
            case '+':
                slot->type = Reply::Type::Status;
                slot->str.assign(line);
                break;
            case '-':
                slot->type = Reply::Type::Error;
                slot->str.assign(line);
                break;
            case ':':
                slot->type = Reply::Type::Integer;
                slot->integer = toInt(line);
                break;
            case '$': {
                const int64_t n = toInt(line);
                if (n >= 0) {
                    slot->type = Reply::Type::Bulk;
                    slot->str.assign(r.substr(pos, static_cast<size_t>(n)));
                    pos += static_cast<size_t>(n) + 2;
                }
                break;
            }
            default: {  // '*'
                const int64_t n = toInt(line);
                if (n >= 0) {
                    slot->type = Reply::Type::Array;
                    if (n > 0) {
                        // All n elements are in `r` (scanned): this reserves for bytes that
                        // arrived, not for a length announced.
                        slot->elements.reserve(static_cast<size_t>(n));
                        stack.push_back({slot, static_cast<uint64_t>(n)});
                        slot = &slot->elements.emplace_back();
                        opened = true;
                    }
                }
                break;
            }
        }
        if (opened) {
            continue;
        }
        for (;;) {
            if (stack.empty()) {
                return;
            }
            if (--stack.back().left > 0) {
                slot = &stack.back().array->elements.emplace_back();
                break;
            }
            stack.pop_back();
        }
    }
}

}  // namespace

std::string encode(const std::vector<std::string>& args) {
    size_t size = 16;
    for (const std::string& a : args) {
        size += a.size() + 24;
    }
    std::string out;
    out.reserve(size);
    appendLength(out, '*', args.size());
    for (const std::string& a : args) {
        appendLength(out, '$', a.size());
        out += a;
        out += "\r\n";
    }
    return out;
}

std::string encodeReply(const Reply& top) {
    std::string out;
    // Depth-first without recursion: the replies still to write, last first.
    std::vector<const Reply*> todo{&top};
    while (!todo.empty()) {
        const Reply& r = *todo.back();
        todo.pop_back();
        switch (r.type) {
            case Reply::Type::Status:
            case Reply::Type::Error:
                if (r.str.find_first_of("\r\n") != std::string::npos) {
                    throw std::invalid_argument("RESP: a status or error line with CR or LF");
                }
                out += r.type == Reply::Type::Status ? '+' : '-';
                out += r.str;
                out += "\r\n";
                break;
            case Reply::Type::Integer:
                out += ':';
                out += std::to_string(r.integer);
                out += "\r\n";
                break;
            case Reply::Type::Bulk:
                appendLength(out, '$', r.str.size());
                out += r.str;
                out += "\r\n";
                break;
            case Reply::Type::Nil:
                out += "$-1\r\n";
                break;
            case Reply::Type::Array:
                appendLength(out, '*', r.elements.size());
                for (auto it = r.elements.rbegin(); it != r.elements.rend(); ++it) {
                    todo.push_back(&*it);
                }
                break;
        }
    }
    return out;
}

size_t parse(std::string_view buf, Reply& out, const Limits& limits) {
    Parser::Scan s;
    const size_t end = scan(buf, s, limits);
    if (end > 0) {
        build(buf.substr(0, end), out);
    }
    return end;
}

bool Parser::next(Reply& out) {
    const std::string_view rest = std::string_view(buf_).substr(start_);
    const size_t end = scan(rest, scan_, limits_);
    if (end == 0) {
        if (start_ > 0) {  // once per reply: what was taken goes (offsets are from the reply)
            buf_.erase(0, start_);
            start_ = 0;
        }
        return false;
    }
    build(rest.substr(0, end), out);
    start_ += end;
    scan_ = Scan();
    if (start_ == buf_.size()) {
        start_ = 0;
        if (buf_.capacity() > (size_t{1} << 20)) {
            std::string().swap(buf_);  // a large reply's buffer is not kept
        } else {
            buf_.clear();
        }
    }
    return true;
}

void Parser::reset() {
    std::string().swap(buf_);
    start_ = 0;
    scan_ = Scan();
}

}  // namespace mp::redis
