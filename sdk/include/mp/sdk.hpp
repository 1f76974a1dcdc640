// SPDX-License-Identifier: Apache-2.0
// Header-only C++ layer over mp/abi.h for plugin authors.
//
//   class MySink : public mp::Plugin {
//     public:
//       MySink(mp::Host host, const mp::Config& cfg) : Plugin(host) { ... }
//       mp_status onEvent(const mp_event& ev) override { ...; return MP_OK; }
//   };
//   static const mp_property kProps[] = {{"path", MP_PROP_STRING, 0, "-", "where"}, {}};
//   MP_DECLARE_PLUGIN(MySink, MP_KIND_SINK, "sink-mine", "1.0.0", "what it does", kProps, 0)
//
// Exceptions never cross the boundary: every trampoline catches them, reports the message
// through set_error()/log() and returns MP_ERROR.
#pragma once

#include <mp/abi.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace mp {

inline mp_str toStr(std::string_view s) { return mp_str{s.data(), s.size()}; }
inline std::string_view view(mp_str s) { return s.data ? std::string_view(s.data, s.len) : ""; }
inline std::string_view view(mp_bytes b) {
    return b.data ? std::string_view(reinterpret_cast<const char*>(b.data), b.len) : "";
}
inline mp_bytes toBytes(std::string_view s) {
    return mp_bytes{reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

/// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no
/// surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
inline size_t utf8SequenceLength(std::string_view s, size_t i) {
    const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = at(i);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // the range allowed for the second byte
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (s.size() - i < n || at(i + 1) < lo || at(i + 1) > hi) {
        return 0;
    }
    for (size_t k = 2; k < n; ++k) {
        if ((at(i + k) & 0xc0) != 0x80) {
            return 0;
        }
    }
    return n;
}

/// A JSON string literal, valid whatever the bytes (SQL from the wire need not be UTF-8).
/// Well-formed UTF-8 is kept as it is; control characters are escaped, and so is every byte
/// that is not part of a well-formed UTF-8 sequence, as \u00XX: it reads as Latin-1, MySQL's
/// old default character set. Text that went through a JSON parser once is therefore UTF-8,
/// and encodes and parses back to itself from then on (a master re-encoding its slaves'
/// reports changes nothing). Appended to `out`.
inline void appendJsonString(std::string& out, std::string_view s) {
    static const char* hex = "0123456789abcdef";
    out.reserve(out.size() + s.size() + s.size() / 8 + 2);
    out += '"';
    // Written through a pointer into a small buffer, appended a round at a time: a round takes
    // at most 64 bytes (and the rest of a UTF-8 sequence begun there), at most 6 bytes out
    // each, plus the 16 a block store may write past its end (418 at most).
    char buf[512];
    // Eight bytes at a time while none needs a look (below 0x20, from 0x80, '"' or '\\'): the
    // usual bit tricks for "a byte below n" and "a byte equal to c", exact for n <= 128.
    constexpr uint64_t kOnes = 0x0101010101010101ULL;
    constexpr uint64_t kHighs = 0x8080808080808080ULL;
    const char* d = s.data();
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        char* p = buf;
        const size_t stop = std::min(n, i + 64);
        while (i < stop) {
#if defined(__SSE2__)
            // sixteen at a time: '"', '\\', and below 0x20 or from 0x80 (signed: below 0x20)
            if (i + 16 <= stop) {
                const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
                const auto quotes = static_cast<unsigned>(
                    _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                   _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')))));
                const auto others = static_cast<unsigned>(
                    _mm_movemask_epi8(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20))));
                if ((quotes | others) == 0) {
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
                    p += 16;
                    i += 16;
                    continue;
                }
                if (others == 0) {
                    // Only quotes and backslashes (JSON in a string: every key): the plain
                    // pieces between them go sixteen bytes at a time from a copy of the block.
                    alignas(16) char block[32] = {};
                    _mm_store_si128(reinterpret_cast<__m128i*>(block), v);
                    unsigned from = 0;
                    for (unsigned m = quotes; m != 0; m &= m - 1) {
                        const auto k = static_cast<unsigned>(__builtin_ctz(m));
                        _mm_storeu_si128(
                            reinterpret_cast<__m128i*>(p),
                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + from)));
                        p += k - from;
                        *p++ = '\\';
                        *p++ = block[k];
                        from = k + 1;
                    }
                    _mm_storeu_si128(
                        reinterpret_cast<__m128i*>(p),
                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + from)));
                    p += 16 - from;
                    i += 16;
                    continue;
                }
                _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
                const auto k = static_cast<size_t>(__builtin_ctz(quotes | others));
                p += k;
                i += k;
            } else
#endif
                if (i + 8 <= stop) {
                uint64_t v = 0;
                std::memcpy(&v, d + i, 8);
                const uint64_t quote = v ^ (kOnes * '"');
                const uint64_t slash = v ^ (kOnes * '\\');
                const uint64_t look = (((v - kOnes * 0x20) & ~v) | ((quote - kOnes) & ~quote) |
                                       ((slash - kOnes) & ~slash) | v) &
                                      kHighs;
                std::memcpy(p, &v, 8);
                if (look == 0) {
                    p += 8;
                    i += 8;
                    continue;
                }
                // The lowest byte flagged is one to look at (a wrong flag needs a borrow from a
                // byte below it, itself flagged): the bytes before it are plain, copied above.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                const size_t k = static_cast<size_t>(__builtin_ctzll(look)) / 8;
                p += k;
                i += k;
#endif
            }
            const auto c = static_cast<unsigned char>(d[i]);
            if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
                *p++ = static_cast<char>(c);
                ++i;
                continue;
            }
            if (c >= 0x80) {
                if (size_t m = utf8SequenceLength(s, i); m != 0) {
                    std::memcpy(p, d + i, m);  // well-formed UTF-8: kept as it is
                    p += m;
                    i += m;
                    continue;
                }
            }
            *p++ = '\\';
            switch (c) {
                case '"':
                    *p++ = '"';
                    break;
                case '\\':
                    *p++ = '\\';
                    break;
                case '\n':
                    *p++ = 'n';
                    break;
                case '\r':
                    *p++ = 'r';
                    break;
                case '\t':
                    *p++ = 't';
                    break;
                default:
                    *p++ = 'u';
                    *p++ = '0';
                    *p++ = '0';
                    *p++ = hex[c >> 4];
                    *p++ = hex[c & 15];
            }
            ++i;
        }
        out.append(buf, static_cast<size_t>(p - buf));
    }
    out += '"';
}

/// The value of a hexadecimal digit (either case), or -1 for any other character.
inline int hexDigit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/// Standard base64 with padding (RFC 4648), appended to `out`: bytes in JSON.
inline void appendBase64(std::string& out, const uint8_t* d, size_t n) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(out.size() + (n + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t{d[i]} << 16) | (uint32_t{d[i + 1]} << 8) | d[i + 2];
        out += k[v >> 18];
        out += k[(v >> 12) & 63];
        out += k[(v >> 6) & 63];
        out += k[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = uint32_t{d[i]} << 16;
        out += k[v >> 18];
        out += k[(v >> 12) & 63];
        out += "==";
    } else if (n - i == 2) {
        uint32_t v = (uint32_t{d[i]} << 16) | (uint32_t{d[i + 1]} << 8);
        out += k[v >> 18];
        out += k[(v >> 12) & 63];
        out += k[(v >> 6) & 63];
        out += '=';
    }
}

/// The bytes of standard base64 with padding, appended to `out`; false (with `out` partly
/// written) for anything else: a character outside the alphabet, a length that is not a multiple
/// of 4, padding other than at the end.
inline bool decodeBase64(std::string_view in, std::string& out) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (in.size() % 4 != 0) {
        return false;
    }
    out.reserve(out.size() + in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        const bool last = i + 4 == in.size();
        const int pads = last ? (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=') : 0;
        int v[4];
        for (int k = 0; k < 4; ++k) {
            v[k] = k >= 4 - pads ? 0 : value(in[i + static_cast<size_t>(k)]);
            if (v[k] < 0) {
                return false;
            }
        }
        const uint32_t w = (static_cast<uint32_t>(v[0]) << 18) |
                           (static_cast<uint32_t>(v[1]) << 12) |
                           (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
        out += static_cast<char>(w >> 16);
        if (pads < 2) {
            out += static_cast<char>((w >> 8) & 0xff);
        }
        if (pads < 1) {
            out += static_cast<char>(w & 0xff);
        }
    }
    return true;
}

/// The same as a new string.
inline std::string jsonString(std::string_view s) {
    std::string out;
    appendJsonString(out, s);
    return out;
}

/// Thrown by plugin code to fail a hook with a message; any std::exception works the same.
class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// A counter registered with the host (cheap to copy; null-safe).
class Counter {
  public:
    Counter() = default;
    Counter(const mp_host_api* api, mp_counter* c) : api_(api), c_(c) {}
    void add(uint64_t delta = 1) const {
        if (c_ != nullptr) {
            api_->counter_add(c_, delta);
        }
    }
    void set(int64_t value) const {
        if (c_ != nullptr) {
            api_->counter_set(c_, value);
        }
    }
    /// Follows a running total kept elsewhere: adds what it grew since `last` (then `last` is
    /// the total).
    void follow(uint64_t total, uint64_t& last) const {
        if (total > last) {
            add(total - last);
        }
        last = total;
    }

  private:
    const mp_host_api* api_ = nullptr;
    mp_counter* c_ = nullptr;
};

/// Read access to this instance's validated configuration (inside the constructor only).
class Config {
  public:
    Config(const mp_host_api* api, const mp_config* cfg) : api_(api), cfg_(cfg) {}

    std::string str(const char* key) const {
        mp_str out{};
        check(api_->config_get_str(cfg_, key, &out), key);
        return std::string(view(out));
    }
    int64_t i64(const char* key) const {
        int64_t out = 0;
        check(api_->config_get_i64(cfg_, key, &out), key);
        return out;
    }
    double f64(const char* key) const {
        double out = 0;
        check(api_->config_get_f64(cfg_, key, &out), key);
        return out;
    }
    bool boolean(const char* key) const {
        int out = 0;
        check(api_->config_get_bool(cfg_, key, &out), key);
        return out != 0;
    }
    std::vector<std::string> list(const char* key) const {
        size_t n = 0;
        check(api_->config_get_list_size(cfg_, key, &n), key);
        std::vector<std::string> items;
        items.reserve(n);
        for (size_t i = 0; i < n; ++i) {
            mp_str item{};
            check(api_->config_get_list_item(cfg_, key, i, &item), key);
            items.emplace_back(view(item));
        }
        return items;
    }

  private:
    static void check(mp_status st, const char* key) {
        if (st != MP_OK) {
            throw Error(std::string("config key '") + key + "' is not available (status " +
                        std::to_string(st) + ")");
        }
    }
    const mp_host_api* api_;
    const mp_config* cfg_;
};

/// emit_records done with one emit_record per record, stopping at the first not taken: what a
/// 1.4-1.6 host offers (and the fake host of mp/testing.hpp). `taken` (may be null): how many
/// were.
inline mp_status emitEach(const mp_host_api* api, mp_host* host, const mp_record* const* records,
                          size_t n, size_t* taken) {
    if (taken != nullptr) {
        *taken = 0;
    }
    for (size_t i = 0; i < n; ++i) {
        mp_status st = api->emit_record(host, records[i]);
        if (st != MP_OK) {
            return st;
        }
        if (taken != nullptr) {
            *taken = i + 1;
        }
    }
    return MP_OK;
}

/// The host as seen by one plugin instance.
class Host {
  public:
    Host() = default;
    Host(mp_host* host, const mp_host_api* api) : host_(host), api_(api) {}

    mp_host* raw() const { return host_; }
    const mp_host_api* api() const { return api_; }

    void log(int level, std::string_view msg) const { api_->log(host_, level, toStr(msg)); }
    void info(std::string_view msg) const { log(MP_LOG_INFO, msg); }
    void warn(std::string_view msg) const { log(MP_LOG_WARN, msg); }
    void error(std::string_view msg) const { log(MP_LOG_ERROR, msg); }
    void debug(std::string_view msg) const { log(MP_LOG_DEBUG, msg); }

    std::optional<std::string> get(const char* key) const {
        mp_str out{};
        if (api_->host_get(host_, key, &out) != MP_OK) {
            return std::nullopt;
        }
        return std::string(view(out));
    }

    /// Tell the host something it plans with (ABI 1.3 host_set: "capture.server_ports",
    /// "capture.threads"). False when this host does not know the key or refuses the value.
    bool set(const char* key, std::string_view value) const {
        return MP_HOST_HAS(api_, host_set) && api_->host_set(host_, key, toStr(value)) == MP_OK;
    }

    mp_status emit(uint32_t type, std::string_view payload, uint64_t ts_ns = 0, uint64_t seq = 0,
                   std::string_view content_type = "application/json") const {
        mp_event ev{};
        ev.struct_size = sizeof ev;
        ev.type = type;
        ev.ts_ns = ts_ns;
        ev.seq = seq;
        ev.content_type = toStr(content_type);
        ev.payload = toBytes(payload);
        return api_->emit(host_, &ev);
    }
    /// Emits one record (ABI 1.4 emit_record; MP_ENOENT from an older host). Copied.
    mp_status emitRecord(std::string_view stream, std::string_view payload, uint64_t seq,
                         uint64_t ts_ns = 0, std::string_view key = {}, std::string_view id = {},
                         std::string_view content_type = "application/json") const {
        if (!MP_HOST_HAS(api_, emit_record)) {
            return MP_ENOENT;
        }
        mp_record r{};
        r.struct_size = sizeof r;
        r.stream = toStr(stream);
        r.key = toStr(key);
        r.id = toStr(id);
        r.content_type = toStr(content_type);
        r.payload = toBytes(payload);
        r.ts_ns = ts_ns;
        r.seq = seq;
        return api_->emit_record(host_, &r);
    }
    /// Emits `n` records in order (ABI 1.7 emit_records; one emit_record each from a 1.4-1.6
    /// host, MP_ENOENT from an older one): MP_OK, or the status of the first record not taken,
    /// none after it being taken; `taken` (may be null): how many were. Copied.
    mp_status emitRecords(const mp_record* const* records, size_t n,
                          size_t* taken = nullptr) const {
        if (taken != nullptr) {
            *taken = 0;
        }
        if (MP_HOST_HAS(api_, emit_records)) {
            return api_->emit_records(host_, records, n, taken);
        }
        if (!MP_HOST_HAS(api_, emit_record)) {
            return MP_ENOENT;
        }
        return emitEach(api_, host_, records, n, taken);
    }
    /// Sinks: the record given with `token` is delivered (MP_OK) or given up.
    void recordDone(uint64_t token, mp_status status = MP_OK) const {
        if (MP_HOST_HAS(api_, record_done)) {
            api_->record_done(host_, token, status);
        }
    }
    mp_status emitFrames(const mp_frame* frames, size_t n) const {
        return api_->emit_frames(host_, frames, n);
    }
    uint64_t nowNs() const { return api_->now_ns(host_); }

    Counter counter(const char* name, const char* help, uint32_t kind = MP_COUNTER) const {
        return Counter(api_, api_->counter_register(host_, name, help, kind));
    }

    /// HTTP helpers: a route with a std::function-free handler (fn(user, req, resp)) and its
    /// access rule (the host answers 401/403/405 itself: docs/security.md), the value of a query
    /// or form parameter, a request header, and a JSON reply.
    bool route(const char* path, mp_http_handler fn, void* user, uint32_t role,
               uint32_t methods = MP_HTTP_GET) const {
        mp_route r{};
        r.struct_size = sizeof r;
        r.role = role;
        r.methods = methods;
        r.handler = fn;
        r.user = user;
        return api_->http_route_ex(host_, path, &r) == MP_OK;
    }
    /// A 1.0 route: the host lets admins only call it, with any method.
    bool route(const char* path, mp_http_handler fn, void* user) const {
        return api_->http_route(host_, path, fn, user) == MP_OK;
    }
    std::optional<std::string> header(const mp_http_request* req, const char* name) const {
        mp_str out{};
        if (api_->http_header(req, name, &out) != MP_OK) {
            return std::nullopt;
        }
        return std::string(view(out));
    }
    /// Who called, as the host authenticated it: a token's name, "loopback" or "anonymous".
    static std::string principal(const mp_http_request* req) {
        return std::string(view(req->principal));
    }
    std::optional<std::string> param(const mp_http_request* req, const char* name) const {
        mp_str out{};
        if (api_->http_query_param(req, name, &out) != MP_OK) {
            return std::nullopt;
        }
        return std::string(view(out));
    }
    void replyJson(mp_http_response* resp, int status, std::string_view body) const {
        api_->http_reply(resp, status, toStr("application/json"), toStr(body));
    }
    void reply(mp_http_response* resp, int status, std::string_view contentType,
               std::string_view body) const {
        api_->http_reply(resp, status, toStr(contentType), toStr(body));
    }

    void requestShutdown(int exit_code, std::string_view reason) const {
        api_->request_shutdown(host_, exit_code, toStr(reason));
    }

  private:
    mp_host* host_ = nullptr;
    const mp_host_api* api_ = nullptr;
};

/// A periodic callback on the host's timer thread; stops on destruction.
class Timer {
  public:
    Timer() = default;
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    ~Timer() { stop(); }

    void start(const Host& host, uint64_t delay_ns, uint64_t period_ns, std::function<void()> fn) {
        stop();
        fn_ = std::move(fn);
        api_ = host.api();
        t_ = api_->timer_start(host.raw(), delay_ns, period_ns, &Timer::trampoline, this);
        if (t_ == nullptr) {
            throw Error("timer_start failed");
        }
    }
    void stop() {
        if (t_ != nullptr) {
            api_->timer_stop(t_);
            t_ = nullptr;
        }
    }

  private:
    static void trampoline(void* self) noexcept {
        try {
            static_cast<Timer*>(self)->fn_();
        } catch (...) {
            // A timer has nobody to report to; swallowing keeps the host alive.
        }
    }
    std::function<void()> fn_;
    const mp_host_api* api_ = nullptr;
    mp_timer* t_ = nullptr;
};

/// Base class of every plugin instance. Override what your kind needs.
class Plugin {
  public:
    explicit Plugin(Host host) : host_(host) {}
    Plugin(const Plugin&) = delete;
    Plugin& operator=(const Plugin&) = delete;
    virtual ~Plugin() = default;

    virtual void start() {}
    virtual void stop() {}
    virtual mp_status onEvent(const mp_event& /*ev*/) { return MP_OK; }
    virtual void onTick(uint64_t /*ts_ns*/) {}
    // Decoders: return the per-connection state (owned by the plugin until streamClose).
    virtual void* streamOpen(const mp_flow& /*flow*/) { return nullptr; }
    virtual void streamData(void* /*stream*/, uint32_t /*dir*/, mp_bytes /*data*/,
                            uint64_t /*ts_ns*/) {}
    virtual void streamGap(void* /*stream*/, uint32_t /*dir*/, uint64_t /*len*/,
                           uint64_t /*ts_ns*/) {}
    virtual void streamClose(void* /*stream*/, uint32_t /*reason*/, uint64_t /*ts_ns*/) {}

    const Host& host() const { return host_; }

  private:
    Host host_;
};

/// A role's name: "anyone", "read", "peer" or "admin" (MP_ROLE_DEFAULT and unknown values are
/// "admin": what the host requires of a route that did not say).
inline const char* roleName(uint32_t role) {
    switch (role) {
        case MP_ROLE_ANYONE:
            return "anyone";
        case MP_ROLE_READ:
            return "read";
        case MP_ROLE_PEER:
            return "peer";
        default:
            return "admin";
    }
}

/// {"error": why}, the body of every error a plugin's route answers.
inline std::string errorJson(std::string_view why) { return "{\"error\":" + jsonString(why) + "}"; }

/// Thrown by a route handler (Routes) to answer `status` with {"error": message}.
class HttpError : public Error {
  public:
    HttpError(int status, const std::string& why) : Error(why), status_(status) {}
    int status() const { return status_; }

  private:
    int status_;
};

/// A plugin's HTTP routes: member functions, each registered with its access rule. Before a
/// handler runs the host has checked the caller's role and the method (401/403/405, per
/// docs/security.md) and that the instance has started (503). A handler answers with
/// host().replyJson(), or throws HttpError(status, why) for {"error": why}; any other exception
/// answers 500 {"error":"internal error"} and its message goes to the log, not to the caller.
///
///   routes_.add("/cluster/join", &MyCluster::join, MP_ROLE_ADMIN, MP_HTTP_POST);
template <class T>
class Routes {
  public:
    using Handler = void (T::*)(const mp_http_request*, mp_http_response*);
    explicit Routes(T& owner) : owner_(owner) {}
    Routes(const Routes&) = delete;
    Routes& operator=(const Routes&) = delete;

    void add(const char* path, Handler handler, uint32_t role, uint32_t methods = MP_HTTP_GET) {
        entries_.push_back(Entry{&owner_, handler, path});
        Entry& e = entries_.back();
        if (!owner_.host().route(path, &Routes::call, &e, role, methods)) {
            throw Error(std::string("cannot serve ") + path);
        }
    }

  private:
    struct Entry {
        T* owner;
        Handler handler;
        const char* path;
    };
    static void call(void* user, const mp_http_request* req, mp_http_response* resp) noexcept {
        auto* e = static_cast<Entry*>(user);
        const Host& host = e->owner->host();
        try {
            (e->owner->*(e->handler))(req, resp);
        } catch (const HttpError& err) {
            host.replyJson(resp, err.status(), errorJson(err.what()));
        } catch (const std::exception& err) {
            host.error(std::string(e->path) + ": " + err.what());
            host.replyJson(resp, 500, errorJson("internal error"));
        } catch (...) {
            host.error(std::string(e->path) + ": an exception");
            host.replyJson(resp, 500, errorJson("internal error"));
        }
    }
    T& owner_;
    std::deque<Entry> entries_;  // stable addresses: each is its route's `user`
};

/// A sink that takes records (ABI 1.4 on_record): derive from it as well as from Plugin. The
/// host calls onRecord() on the sink's record thread, in order per producer; return MP_OK and
/// call host().recordDone(token, status) once when the record is delivered or given up (from
/// any thread, possibly inside onRecord), or MP_EAGAIN to be offered the same record later.
class RecordSink {
  public:
    virtual ~RecordSink() = default;
    virtual mp_status onRecord(const mp_record& record, uint64_t token) = 0;
};

/// Records gathered to be emitted together (Host::emitRecords): a producer of many small
/// records adds them as it makes them and emits the batch at a boundary of its own (a
/// transaction, a full batch), paying the host's per-record cost once per batch. The batch keeps
/// its memory from one batch to the next.
class RecordBatch {
  public:
    /// Copies one record in.
    void add(std::string_view stream, std::string_view payload, uint64_t seq, uint64_t ts_ns = 0,
             std::string_view key = {}, std::string_view id = {},
             std::string_view content_type = "application/json") {
        std::string& slot = next(stream, seq, ts_ns, key, id, content_type);
        slot.assign(payload);
        bytes_ += slot.size();
    }
    /// Takes one record's payload without copying it: `payload` is swapped in and comes back
    /// empty, holding the memory of an earlier record's payload (rendering into it again
    /// allocates nothing once batches have their usual size).
    void add(std::string_view stream, std::string&& payload, uint64_t seq, uint64_t ts_ns = 0,
             std::string_view key = {}, std::string_view id = {},
             std::string_view content_type = "application/json") {
        std::string& slot = next(stream, seq, ts_ns, key, id, content_type);
        slot.swap(payload);
        payload.clear();
        bytes_ += slot.size();
    }
    size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    /// Bytes held (payloads and the other fields).
    size_t bytes() const { return bytes_; }
    void clear() {
        items_.clear();
        fields_.clear();
        bytes_ = 0;
    }
    /// Hands every record to the host in order and empties the batch, whatever the answer:
    /// MP_OK, or the status of the first record not taken (none after it was); `taken` (may be
    /// null) says how many were.
    mp_status emit(const Host& host, size_t* taken = nullptr) {
        records_.resize(items_.size());
        pointers_.resize(items_.size());
        for (size_t i = 0; i < items_.size(); ++i) {
            const Item& it = items_[i];
            mp_record& r = records_[i];
            r = mp_record{};
            r.struct_size = sizeof r;
            const char* at = fields_.data() + it.at;
            r.stream = mp_str{at, it.stream};
            at += it.stream;
            r.key = mp_str{at, it.key};
            at += it.key;
            r.id = mp_str{at, it.id};
            at += it.id;
            r.content_type = mp_str{at, it.type};
            const std::string& payload = payloads_[i];
            r.payload = mp_bytes{reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
            r.seq = it.seq;
            r.ts_ns = it.ts;
            pointers_[i] = &r;
        }
        mp_status st = host.emitRecords(pointers_.data(), pointers_.size(), taken);
        clear();
        return st;
    }

  private:
    struct Item {
        size_t at, stream, key, id, type;  // where its fields start in fields_, their lengths
        uint64_t seq, ts;
    };
    // The next record's item, and the string its payload goes to.
    std::string& next(std::string_view stream, uint64_t seq, uint64_t ts_ns, std::string_view key,
                      std::string_view id, std::string_view content_type) {
        Item it{fields_.size(),      stream.size(), key.size(), id.size(),
                content_type.size(), seq,           ts_ns};
        fields_.append(stream).append(key).append(id).append(content_type);
        items_.push_back(it);
        if (payloads_.size() < items_.size()) {
            payloads_.emplace_back();
        }
        bytes_ += stream.size() + key.size() + id.size() + content_type.size();
        return payloads_[items_.size() - 1];
    }
    std::vector<Item> items_;
    std::string fields_;                 // every record's stream, key, id and content type
    std::vector<std::string> payloads_;  // one per record, kept from batch to batch
    size_t bytes_ = 0;
    std::vector<mp_record> records_;
    std::vector<const mp_record*> pointers_;
};

/// A producer that wants its delivered mark (ABI 1.4 on_delivered): every record it emitted up
/// to `seq` was delivered by every subscribed sink. In order, never concurrently with itself;
/// also after stop() while the host drains (until the instance is destroyed).
class RecordProducer {
  public:
    virtual ~RecordProducer() = default;
    virtual void onDelivered(uint64_t seq) = 0;
};

/// A decoder whose workers aggregate on their own (ABI 1.3 collect/report hooks): derive from
/// it as well as from Plugin, and MP_DECLARE_PLUGIN fills the two hooks (for a T that has
/// T::CollectedPart). The host calls
/// collect() of every worker's instance at the end of an interval, never while that instance's
/// stream hooks run, then report() of worker 0's instance with every part.
template <class Part>
class Collecting {
  public:
    using CollectedPart = Part;
    virtual ~Collecting() = default;
    /// This worker's interval, taken out (nullptr: nothing to report).
    virtual std::unique_ptr<Part> collect(uint64_t seq, uint64_t ts_ns) = 0;
    /// The report's members (`"key":value,...`, no braces) for every worker's part (nullptr
    /// entries included). Runs on the report thread while worker 0's streams keep running: use
    /// the parts and what create() fixed, nothing else of the instance.
    virtual std::string report(std::vector<std::unique_ptr<Part>> parts) = 0;
};

namespace detail {

// The host names the hook in its own message; the error text is just what went wrong.
inline mp_status fail(const Host& host, const char* /*hook*/, const char* what) {
    host.api()->set_error(host.raw(), MP_ERROR, toStr(what));
    return MP_ERROR;
}

template <class T>
struct Trampolines {
    static mp_status create(mp_host* h, const mp_host_api* api, const mp_config* cfg,
                            void** out) noexcept {
        Host host(h, api);
        try {
            Config config(api, cfg);
            *out = static_cast<Plugin*>(new T(host, config));
            return MP_OK;
        } catch (const std::exception& e) {
            return fail(host, "create", e.what());
        } catch (...) {
            return fail(host, "create", "unknown exception");
        }
    }
    static mp_status start(void* self) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            p->start();
            return MP_OK;
        } catch (const std::exception& e) {
            return fail(p->host(), "start", e.what());
        } catch (...) {
            return fail(p->host(), "start", "unknown exception");
        }
    }
    static void stop(void* self) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            p->stop();
        } catch (const std::exception& e) {
            p->host().error(std::string("stop: ") + e.what());
        } catch (...) {
            p->host().error("stop: unknown exception");
        }
    }
    static void destroy(void* self) noexcept { delete static_cast<Plugin*>(self); }
    static mp_status onEvent(void* self, const mp_event* ev) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            return p->onEvent(*ev);
        } catch (const std::exception& e) {
            return fail(p->host(), "on_event", e.what());
        } catch (...) {
            return fail(p->host(), "on_event", "unknown exception");
        }
    }
    static void onTick(void* self, uint64_t ts) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            p->onTick(ts);
        } catch (const std::exception& e) {
            p->host().error(std::string("on_tick: ") + e.what());
        } catch (...) {
            p->host().error("on_tick: unknown exception");
        }
    }
    static mp_status streamOpen(void* self, const mp_flow* flow, void** out) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            *out = p->streamOpen(*flow);
            return MP_OK;
        } catch (const std::exception& e) {
            return fail(p->host(), "stream_open", e.what());
        } catch (...) {
            return fail(p->host(), "stream_open", "unknown exception");
        }
    }
    static void streamData(void* self, void* s, uint32_t dir, mp_bytes d, uint64_t ts) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            p->streamData(s, dir, d, ts);
        } catch (const std::exception& e) {
            p->host().error(std::string("stream_data: ") + e.what());
        } catch (...) {
            p->host().error("stream_data: unknown exception");
        }
    }
    static void streamGap(void* self, void* s, uint32_t dir, uint64_t len, uint64_t ts) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            p->streamGap(s, dir, len, ts);
        } catch (...) {
            p->host().error("stream_gap: exception");
        }
    }
    static void streamClose(void* self, void* s, uint32_t reason, uint64_t ts) noexcept {
        auto* p = static_cast<Plugin*>(self);
        try {
            p->streamClose(s, reason, ts);
        } catch (...) {
            p->host().error("stream_close: exception");
        }
    }
};

// The collect/report hooks of a Collecting<Part> decoder; null hooks for any other plugin.
template <class T, class = void>
struct CollectHooks {
    static constexpr void* (*collect)(void*, uint64_t, uint64_t) = nullptr;
    static constexpr mp_status (*report)(void*, void* const*, size_t, const mp_writer*) = nullptr;
};

template <class T>
struct CollectHooks<T, std::void_t<typename T::CollectedPart>> {
    using Part = typename T::CollectedPart;
    static T* self(void* instance) { return static_cast<T*>(static_cast<Plugin*>(instance)); }
    static void* collectFn(void* instance, uint64_t seq, uint64_t ts) noexcept {
        T* t = self(instance);
        try {
            return t->collect(seq, ts).release();
        } catch (const std::exception& e) {
            t->host().error(std::string("collect: ") + e.what());
        } catch (...) {
            t->host().error("collect: unknown exception");
        }
        return nullptr;
    }
    static mp_status reportFn(void* instance, void* const* parts, size_t n,
                              const mp_writer* out) noexcept {
        T* t = self(instance);
        std::vector<std::unique_ptr<Part>> owned;  // freed here whatever happens
        try {
            owned.reserve(n);
            for (size_t i = 0; i < n; ++i) {
                owned.emplace_back(static_cast<Part*>(parts[i]));
            }
        } catch (...) {
            for (size_t i = owned.size(); i < n; ++i) {
                delete static_cast<Part*>(parts[i]);
            }
            return MP_ENOMEM;
        }
        try {
            std::string text = t->report(std::move(owned));
            out->write(out->ctx, toStr(text));
            return MP_OK;
        } catch (const std::exception& e) {
            return fail(t->host(), "report", e.what());
        } catch (...) {
            return fail(t->host(), "report", "unknown exception");
        }
    }
    static constexpr void* (*collect)(void*, uint64_t, uint64_t) = &collectFn;
    static constexpr mp_status (*report)(void*, void* const*, size_t, const mp_writer*) = &reportFn;
};

// on_record for a RecordSink, on_delivered for a RecordProducer; null hooks otherwise.
template <class T>
struct RecordHooks {
    static T* self(void* instance) { return static_cast<T*>(static_cast<Plugin*>(instance)); }
    static mp_status onRecordFn(void* instance, const mp_record* r, uint64_t token) noexcept {
        T* t = self(instance);
        try {
            if constexpr (std::is_base_of_v<RecordSink, T>) {
                return static_cast<RecordSink*>(t)->onRecord(*r, token);
            }
            return MP_ERROR;
        } catch (const std::exception& e) {
            return fail(t->host(), "on_record", e.what());
        } catch (...) {
            return fail(t->host(), "on_record", "unknown exception");
        }
    }
    static void onDeliveredFn(void* instance, uint64_t seq) noexcept {
        T* t = self(instance);
        try {
            if constexpr (std::is_base_of_v<RecordProducer, T>) {
                static_cast<RecordProducer*>(t)->onDelivered(seq);
            }
        } catch (const std::exception& e) {
            t->host().error(std::string("on_delivered: ") + e.what());
        } catch (...) {
            t->host().error("on_delivered: unknown exception");
        }
    }
    static constexpr mp_status (*onRecord)(void*, const mp_record*,
                                           uint64_t) = std::is_base_of_v<RecordSink, T>
                                                           ? &onRecordFn
                                                           : nullptr;
    static constexpr void (*onDelivered)(void*, uint64_t) = std::is_base_of_v<RecordProducer, T>
                                                                ? &onDeliveredFn
                                                                : nullptr;
};

}  // namespace detail
}  // namespace mp

/// Emits the static descriptor, the guarded trampolines and the exported entry point. A class
/// that derives from mp::Collecting<Part> declares `using CollectedPart = Part;` and gets the
/// collect/report hooks.
#define MP_DECLARE_PLUGIN(Class, Kind, Name, Version, Description, Properties, Flags)       \
    extern "C" MP_EXPORT const mp_plugin* mp_plugin_entry_v1(const mp_host_api* /*host*/) { \
        using T = ::mp::detail::Trampolines<Class>;                                         \
        using C = ::mp::detail::CollectHooks<Class>;                                        \
        using R = ::mp::detail::RecordHooks<Class>;                                         \
        static const mp_plugin desc = {                                                     \
            sizeof(mp_plugin), MP_ABI_MAJOR,  MP_ABI_MINOR,    (Kind),                      \
            (Flags),           (Name),        (Version),       (Description),               \
            (Properties),      &T::create,    &T::start,       &T::stop,                    \
            &T::destroy,       &T::onEvent,   &T::onTick,      &T::streamOpen,              \
            &T::streamData,    &T::streamGap, &T::streamClose, C::collect,                  \
            C::report,         R::onRecord,   R::onDelivered,                               \
        };                                                                                  \
        return &desc;                                                                       \
    }
