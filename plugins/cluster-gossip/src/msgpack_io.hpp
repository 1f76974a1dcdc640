// SPDX-License-Identifier: Apache-2.0
// Internal to the memberlist wire format (wire.hpp): msgpack written by hand so that the bytes
// are Go's (go-msgpack 0.5.5: str never str8, smallest unsigned ints, struct keys sorted) and
// read through msgpack-cxx with hard limits. Only the wire's own sources include this.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST 1
#endif
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <msgpack.hpp>
#include <string_view>

#include "wire.hpp"

namespace mp::gossip::detail {

// ------------------------------------------------------------------------------------ limits

constexpr size_t kMaxEntries = 4096;  // msgpack array / map entries; push-pull nodes
constexpr size_t kMaxStr = 1u << 20;  // msgpack str / bin / ext bytes
constexpr size_t kMaxDepth = 16;      // msgpack nesting (serf needs 5)

// ------------------------------------------------------------------------------------ writing

/// msgpack as go-msgpack 0.5.5 writes it with a default MsgpackHandle.
class Writer {
  public:
    explicit Writer(Bytes& out) : out_(out) {}

    void byte(uint8_t b) { out_.push_back(b); }
    void be(uint64_t v, int n) {
        for (int i = n - 1; i >= 0; --i) {
            out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
        }
    }
    /// The smallest positive form, whatever the Go type.
    void uint(uint64_t v) {
        if (v <= 0x7f) {
            byte(static_cast<uint8_t>(v));
        } else if (v <= 0xff) {
            byte(0xcc);
            be(v, 1);
        } else if (v <= 0xffff) {
            byte(0xcd);
            be(v, 2);
        } else if (v <= 0xffffffff) {
            byte(0xce);
            be(v, 4);
        } else {
            byte(0xcf);
            be(v, 8);
        }
    }
    void boolean(bool b) { byte(b ? 0xc3 : 0xc2); }
    void nil() { byte(0xc0); }
    /// Strings and []byte alike: fixstr, str16, str32 (Go never writes str8).
    void str(const uint8_t* p, size_t n) {
        if (n < 32) {
            byte(static_cast<uint8_t>(0xa0 | n));
        } else if (n <= 0xffff) {
            byte(0xda);
            be(n, 2);
        } else {
            byte(0xdb);
            be(n, 4);
        }
        if (n > 0) {
            out_.insert(out_.end(), p, p + n);
        }
    }
    void str(std::string_view s) { str(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }
    /// A []byte field: an empty one is written as Go writes a nil slice (0xc0).
    void bytes(const Bytes& b) {
        if (b.empty()) {
            nil();
        } else {
            str(b.data(), b.size());
        }
    }
    void map(size_t n) {
        if (n < 16) {
            byte(static_cast<uint8_t>(0x80 | n));
        } else if (n <= 0xffff) {
            byte(0xde);
            be(n, 2);
        } else {
            byte(0xdf);
            be(n, 4);
        }
    }
    void raw(const uint8_t* p, size_t n) {
        if (n > 0) {
            out_.insert(out_.end(), p, p + n);
        }
    }

  private:
    Bytes& out_;
};

inline Bytes withType(MsgType t) { return Bytes{static_cast<uint8_t>(t)}; }

inline void putBe32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

inline uint32_t getBe32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
           static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

// ------------------------------------------------------------------------------------ reading

using Obj = msgpack::object;
namespace mt = msgpack::type;

enum class Got { Ok, More, Bad };

/// Strings and binaries point into the input instead of being copied.
inline bool referenceAll(mt::object_type, std::size_t, void*) { return true; }

/// One msgpack object at p[off..n): Ok (off advanced), More (a valid prefix) or Bad.
inline Got unpackAt(const uint8_t* p, size_t n, size_t& off, msgpack::object_handle& oh) {
    if (p == nullptr || off >= n) {
        return Got::More;
    }
    try {
        const msgpack::unpack_limit limit(kMaxEntries, kMaxEntries, kMaxStr, kMaxStr, kMaxStr,
                                          kMaxDepth);
        size_t o = off;
        oh = msgpack::unpack(reinterpret_cast<const char*>(p), n, o, referenceAll, nullptr, limit);
        if (!oh.zone() || o <= off || o > n) {
            return Got::Bad;
        }
        off = o;
        return Got::Ok;
    } catch (const msgpack::insufficient_bytes&) {
        return Got::More;
    } catch (...) {
        return Got::Bad;
    }
}

/// Calls f(name, value) for every field of a Go struct sent as a map (keys are the field names;
/// a nil key is no field) or as a positional array (`order`: the Go declaration order). f
/// returns false on a value of the wrong type; unknown names must return true (Go skips them).
template <class F>
inline bool forFields(const Obj& o, std::initializer_list<std::string_view> order, F&& f) {
    if (o.type == mt::MAP) {
        for (uint32_t i = 0; i < o.via.map.size; ++i) {
            const msgpack::object_kv& kv = o.via.map.ptr[i];
            std::string_view key;
            if (kv.key.type == mt::STR) {
                key = std::string_view(kv.key.via.str.ptr, kv.key.via.str.size);
            } else if (kv.key.type != mt::NIL) {
                return false;
            }
            if (!f(key, kv.val)) {
                return false;
            }
        }
        return true;
    }
    if (o.type == mt::ARRAY) {
        uint32_t i = 0;
        for (std::string_view name : order) {
            if (i >= o.via.array.size) {
                break;
            }
            if (!f(name, o.via.array.ptr[i++])) {
                return false;
            }
        }
        return true;
    }
    return false;
}

/// Any non-negative integer up to `max`; nil is 0 (Go leaves the zero value).
inline bool getUint(const Obj& o, uint64_t max, uint64_t& v) {
    if (o.type == mt::NIL) {
        v = 0;
        return true;
    }
    if (o.type != mt::POSITIVE_INTEGER || o.via.u64 > max) {
        return false;
    }
    v = o.via.u64;
    return true;
}

template <class T>
inline bool getU(const Obj& o, T& out) {
    uint64_t v = 0;
    if (!getUint(o, std::numeric_limits<T>::max(), v)) {
        return false;
    }
    out = static_cast<T>(v);
    return true;
}

/// Go's int fields (lengths, counts): non-negative and at most `max`.
inline bool getCount(const Obj& o, size_t max, size_t& out) {
    uint64_t v = 0;
    if (!getUint(o, max, v)) {
        return false;
    }
    out = static_cast<size_t>(v);
    return true;
}

/// go-msgpack reads a bool from true/false and from the fixints 0 and 1.
inline bool getBool(const Obj& o, bool& b) {
    if (o.type == mt::BOOLEAN) {
        b = o.via.boolean;
        return true;
    }
    if (o.type == mt::NIL) {
        b = false;
        return true;
    }
    if (o.type == mt::POSITIVE_INTEGER && o.via.u64 <= 1) {
        b = o.via.u64 == 1;
        return true;
    }
    return false;
}

/// A Go string: str only (bin is refused, as Go does), nil is "".
inline bool getStr(const Obj& o, std::string& s) {
    if (o.type == mt::STR) {
        s.assign(o.via.str.ptr, o.via.str.size);
        return true;
    }
    if (o.type == mt::NIL) {
        s.clear();
        return true;
    }
    return false;
}

/// A Go []byte: str or bin, nil is empty.
inline bool getView(const Obj& o, const uint8_t*& p, size_t& n) {
    if (o.type == mt::STR) {
        p = reinterpret_cast<const uint8_t*>(o.via.str.ptr);
        n = o.via.str.size;
        return true;
    }
    if (o.type == mt::BIN) {
        p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
        n = o.via.bin.size;
        return true;
    }
    if (o.type == mt::NIL) {
        p = nullptr;
        n = 0;
        return true;
    }
    return false;
}

inline bool getBytes(const Obj& o, Bytes& b) {
    const uint8_t* p = nullptr;
    size_t n = 0;
    if (!getView(o, p, n)) {
        return false;
    }
    if (n == 0) {
        b.clear();
    } else {
        b.assign(p, p + n);
    }
    return true;
}

/// Vsn ([]uint8): like []byte, or an array of small ints.
inline bool getVsn(const Obj& o, Bytes& b) {
    if (o.type != mt::ARRAY) {
        return getBytes(o, b);
    }
    Bytes v;
    for (uint32_t i = 0; i < o.via.array.size; ++i) {
        uint8_t x = 0;
        if (!getU(o.via.array.ptr[i], x)) {
            return false;
        }
        v.push_back(x);
    }
    b = std::move(v);
    return true;
}

inline bool addrOk(const Bytes& a) { return a.size() == 4 || a.size() == 16; }
inline bool optionalAddrOk(const Bytes& a) { return a.empty() || addrOk(a); }

}  // namespace mp::gossip::detail
