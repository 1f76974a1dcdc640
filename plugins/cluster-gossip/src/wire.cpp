// SPDX-License-Identifier: Apache-2.0
// memberlist 0.2.x's wire format (see wire.hpp). Writing is done by hand so that the bytes are
// Go's (go-msgpack 0.5.5: str never str8, smallest unsigned ints, struct keys sorted); reading
// goes through msgpack-cxx with hard limits, and nothing here lets an exception out.
#include "wire.hpp"

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST 1
#endif
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <msgpack.hpp>
#include <string_view>

namespace mp::gossip {

namespace {

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

Bytes withType(MsgType t) { return Bytes{static_cast<uint8_t>(t)}; }

void putBe32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

uint32_t getBe32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
           static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

// ------------------------------------------------------------------------------------ reading

using Obj = msgpack::object;
namespace mt = msgpack::type;

enum class Got { Ok, More, Bad };

/// Strings and binaries point into the input instead of being copied.
bool referenceAll(mt::object_type, std::size_t, void*) { return true; }

/// One msgpack object at p[off..n): Ok (off advanced), More (a valid prefix) or Bad.
Got unpackAt(const uint8_t* p, size_t n, size_t& off, msgpack::object_handle& oh) {
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
bool forFields(const Obj& o, std::initializer_list<std::string_view> order, F&& f) {
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
bool getUint(const Obj& o, uint64_t max, uint64_t& v) {
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
bool getU(const Obj& o, T& out) {
    uint64_t v = 0;
    if (!getUint(o, std::numeric_limits<T>::max(), v)) {
        return false;
    }
    out = static_cast<T>(v);
    return true;
}

/// Go's int fields (lengths, counts): non-negative and at most `max`.
bool getCount(const Obj& o, size_t max, size_t& out) {
    uint64_t v = 0;
    if (!getUint(o, max, v)) {
        return false;
    }
    out = static_cast<size_t>(v);
    return true;
}

/// go-msgpack reads a bool from true/false and from the fixints 0 and 1.
bool getBool(const Obj& o, bool& b) {
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
bool getStr(const Obj& o, std::string& s) {
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
bool getView(const Obj& o, const uint8_t*& p, size_t& n) {
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

bool getBytes(const Obj& o, Bytes& b) {
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
bool getVsn(const Obj& o, Bytes& b) {
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

bool addrOk(const Bytes& a) { return a.size() == 4 || a.size() == 16; }
bool optionalAddrOk(const Bytes& a) { return a.empty() || addrOk(a); }

// Struct readers: field names and declaration order are memberlist's.

bool readPing(const Obj& o, Ping& m) {
    return forFields(o, {"SeqNo", "Node", "SourceAddr", "SourcePort", "SourceNode"},
                     [&](std::string_view k, const Obj& v) {
                         if (k == "SeqNo") return getU(v, m.seqNo);
                         if (k == "Node") return getStr(v, m.node);
                         if (k == "SourceAddr") return getBytes(v, m.sourceAddr);
                         if (k == "SourcePort") return getU(v, m.sourcePort);
                         if (k == "SourceNode") return getStr(v, m.sourceNode);
                         return true;
                     }) &&
           optionalAddrOk(m.sourceAddr);
}

bool readIndirectPing(const Obj& o, IndirectPing& m) {
    return forFields(o,
                     {"SeqNo", "Target", "Port", "Node", "Nack", "SourceAddr", "SourcePort",
                      "SourceNode"},
                     [&](std::string_view k, const Obj& v) {
                         if (k == "SeqNo") return getU(v, m.seqNo);
                         if (k == "Target") return getBytes(v, m.target);
                         if (k == "Port") return getU(v, m.port);
                         if (k == "Node") return getStr(v, m.node);
                         if (k == "Nack") return getBool(v, m.nack);
                         if (k == "SourceAddr") return getBytes(v, m.sourceAddr);
                         if (k == "SourcePort") return getU(v, m.sourcePort);
                         if (k == "SourceNode") return getStr(v, m.sourceNode);
                         return true;
                     }) &&
           addrOk(m.target) && optionalAddrOk(m.sourceAddr);
}

bool readAck(const Obj& o, Ack& m) {
    return forFields(o, {"SeqNo", "Payload"}, [&](std::string_view k, const Obj& v) {
        if (k == "SeqNo") return getU(v, m.seqNo);
        if (k == "Payload") return getBytes(v, m.payload);
        return true;
    });
}

bool readNack(const Obj& o, Nack& m) {
    return forFields(o, {"SeqNo"}, [&](std::string_view k, const Obj& v) {
        return k == "SeqNo" ? getU(v, m.seqNo) : true;
    });
}

bool readAlive(const Obj& o, Alive& m) {
    return forFields(o, {"Incarnation", "Node", "Addr", "Port", "Meta", "Vsn"},
                     [&](std::string_view k, const Obj& v) {
                         if (k == "Incarnation") return getU(v, m.incarnation);
                         if (k == "Node") return getStr(v, m.node);
                         if (k == "Addr") return getBytes(v, m.addr);
                         if (k == "Port") return getU(v, m.port);
                         if (k == "Meta") return getBytes(v, m.meta);
                         if (k == "Vsn") return getVsn(v, m.vsn);
                         return true;
                     }) &&
           addrOk(m.addr) && m.vsn.size() == 6;
}

template <class T>  // Suspect, Dead
bool readAccusation(const Obj& o, T& m) {
    return forFields(o, {"Incarnation", "Node", "From"}, [&](std::string_view k, const Obj& v) {
        if (k == "Incarnation") return getU(v, m.incarnation);
        if (k == "Node") return getStr(v, m.node);
        if (k == "From") return getStr(v, m.from);
        return true;
    });
}

bool readErr(const Obj& o, ErrResp& m) {
    return forFields(o, {"Error"}, [&](std::string_view k, const Obj& v) {
        return k == "Error" ? getStr(v, m.error) : true;
    });
}

bool readNodeState(const Obj& o, PushNodeState& m) {
    uint64_t state = 0;
    bool ok = forFields(o, {"Name", "Addr", "Port", "Meta", "Incarnation", "State", "Vsn"},
                        [&](std::string_view k, const Obj& v) {
                            if (k == "Name") return getStr(v, m.name);
                            if (k == "Addr") return getBytes(v, m.addr);
                            if (k == "Port") return getU(v, m.port);
                            if (k == "Meta") return getBytes(v, m.meta);
                            if (k == "Incarnation") return getU(v, m.incarnation);
                            if (k == "State") return getUint(v, 3, state);
                            if (k == "Vsn") return getVsn(v, m.vsn);
                            return true;
                        });
    m.state = static_cast<State>(state);
    return ok && addrOk(m.addr) && m.vsn.size() == 6;
}

struct PushPullHeader {
    bool join = false;
    size_t nodes = 0;
    size_t userStateLen = 0;
};

bool readPushPullHeader(const Obj& o, PushPullHeader& h) {
    return forFields(o, {"Nodes", "UserStateLen", "Join"}, [&](std::string_view k, const Obj& v) {
        if (k == "Nodes") return getCount(v, kMaxEntries, h.nodes);
        if (k == "UserStateLen") return getCount(v, SIZE_MAX, h.userStateLen);
        if (k == "Join") return getBool(v, h.join);
        return true;
    });
}

bool readUserMsgHeader(const Obj& o, size_t& len) {
    len = 0;
    return forFields(o, {"UserMsgLen"}, [&](std::string_view k, const Obj& v) {
        return k == "UserMsgLen" ? getCount(v, SIZE_MAX, len) : true;
    });
}

/// decode(): one msgpack object read by `read` into a fresh T, copied out on success only.
template <class T, class R>
bool decodeWith(const uint8_t* p, size_t n, T& out, R read) {
    try {
        msgpack::object_handle oh;
        size_t off = 0;
        if (unpackAt(p, n, off, oh) != Got::Ok) {
            return false;
        }
        T m;
        if (!read(oh.get(), m)) {
            return false;
        }
        out = std::move(m);
        return true;
    } catch (...) {
        return false;
    }
}

// ------------------------------------------------------------------------------------ LZW

constexpr uint32_t kClear = 256;  // 1 << litWidth
constexpr uint32_t kEof = 257;
constexpr uint32_t kMaxCode = 4095;  // 12-bit codes
constexpr unsigned kMaxWidth = 12;

class BitWriter {
  public:
    explicit BitWriter(Bytes& out) : out_(out) {}
    void write(uint32_t code) {
        bits_ |= code << nBits_;
        nBits_ += width;
        while (nBits_ >= 8) {
            out_.push_back(static_cast<uint8_t>(bits_));
            bits_ >>= 8;
            nBits_ -= 8;
        }
    }
    void flush() {
        if (nBits_ > 0) {
            out_.push_back(static_cast<uint8_t>(bits_));
        }
    }
    unsigned width = 9;

  private:
    Bytes& out_;
    uint32_t bits_ = 0;
    unsigned nBits_ = 0;
};

// ------------------------------------------------------------------------------------ crypto

constexpr size_t kNonce = 12;
constexpr size_t kTag = 16;
constexpr size_t kVsnOverhead = 1 + kNonce + kTag;  // 29: version 1
constexpr size_t kMaxCrypt = static_cast<size_t>(INT_MAX) - 64;

const EVP_CIPHER* gcmCipher(size_t keyLen) {
    switch (keyLen) {
        case 16:
            return EVP_aes_128_gcm();
        case 24:
            return EVP_aes_192_gcm();
        case 32:
            return EVP_aes_256_gcm();
        default:
            return nullptr;
    }
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

/// AES-GCM, one pass either way: sealing writes n bytes of ciphertext to `out` and the 16-byte
/// tag to `tag`; opening writes n bytes of plaintext and is false unless `tag` authenticates.
bool gcm(bool seal, const Bytes& key, const uint8_t* nonce, const uint8_t* in, size_t n,
         const uint8_t* aad, size_t aadLen, uint8_t* tag, uint8_t* out) {
    const EVP_CIPHER* cipher = gcmCipher(key.size());
    if (cipher == nullptr || n > kMaxCrypt) {
        return false;
    }
    const int enc = seal ? 1 : 0;
    CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    int len = 0;
    if (!ctx || EVP_CipherInit_ex(ctx.get(), cipher, nullptr, nullptr, nullptr, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kNonce), nullptr) !=
            1 ||
        EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce, enc) != 1) {
        return false;
    }
    if (aadLen > 0 &&
        EVP_CipherUpdate(ctx.get(), nullptr, &len, aad, static_cast<int>(aadLen)) != 1) {
        return false;
    }
    int total = 0;
    if (n > 0) {
        if (EVP_CipherUpdate(ctx.get(), out, &len, in, static_cast<int>(n)) != 1) {
            return false;
        }
        total = len;
    }
    if (!seal &&
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTag), tag) != 1) {
        return false;
    }
    uint8_t last[16];
    if (EVP_CipherFinal_ex(ctx.get(), n > 0 ? out + total : last, &len) != 1 ||
        static_cast<size_t>(total) + static_cast<size_t>(len) != n) {
        return false;
    }
    return !seal ||
           EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTag), tag) == 1;
}

/// memberlist's encryptPayload, version 1: vsn | nonce | ciphertext | tag, appended to `out`.
bool sealPayload(const Bytes& key, const uint8_t* p, size_t n, const uint8_t* aad, size_t aadLen,
                 Bytes& out) {
    if (n > kMaxCrypt) {
        return false;
    }
    size_t at = out.size();
    out.resize(at + kVsnOverhead + n);
    uint8_t* dst = out.data() + at;
    dst[0] = 1;
    if (RAND_bytes(dst + 1, static_cast<int>(kNonce)) != 1 ||
        !gcm(true, key, dst + 1, p, n, aad, aadLen, dst + 1 + kNonce + n, dst + 1 + kNonce)) {
        return false;
    }
    return true;
}

/// memberlist's decryptPayload: versions 0 (PKCS7) and 1, every key tried in order.
bool openPayload(const std::vector<Bytes>& keys, const uint8_t* p, size_t n, const uint8_t* aad,
                 size_t aadLen, Bytes& out) {
    if (p == nullptr || n < 1 || p[0] > 1) {
        return false;
    }
    const bool padded = p[0] == 0;
    if (n < kVsnOverhead + (padded ? 16 : 0) || n - kVsnOverhead > kMaxCrypt) {
        return false;
    }
    const size_t ctLen = n - kVsnOverhead;
    Bytes plain(ctLen);
    uint8_t tag[kTag];  // OpenSSL takes the expected tag as writable
    std::copy(p + n - kTag, p + n, tag);
    for (const Bytes& key : keys) {
        if (!gcm(false, key, p + 1, p + 1 + kNonce, ctLen, aad, aadLen, tag, plain.data())) {
            continue;
        }
        if (padded) {
            uint8_t pad = plain.empty() ? 0 : plain.back();
            if (pad == 0 || pad > 16 || pad > plain.size()) {
                return false;
            }
            plain.resize(plain.size() - pad);
        }
        out = std::move(plain);
        return true;
    }
    return false;
}

/// Standard base64 with padding; CR and LF are skipped (as Go's decoder does). OpenSSL decodes;
/// this only refuses what EVP_DecodeBlock would let through (padding anywhere but at the end).
bool base64Decode(const std::string& in, Bytes& out) {
    std::string s;
    for (char c : in) {
        if (c != '\r' && c != '\n') {
            s.push_back(c);
        }
    }
    if (s.empty() || s.size() % 4 != 0 || s.size() > (1u << 20)) {
        return false;
    }
    size_t pads = s.size() - s.find_last_not_of('=') - 1;
    if (s.find('=') < s.size() - pads || pads > 2) {
        return false;
    }
    Bytes r(s.size() / 4 * 3);
    int n = EVP_DecodeBlock(r.data(), reinterpret_cast<const unsigned char*>(s.data()),
                            static_cast<int>(s.size()));
    if (n < 0 || static_cast<size_t>(n) != r.size()) {
        return false;  // a character outside the alphabet
    }
    r.resize(r.size() - pads);
    out = std::move(r);
    return true;
}

// ------------------------------------------------------------------------------------ streams

class StreamParser {
  public:
    StreamParser(size_t maxBytes, std::string& error) : max_(maxBytes), error_(error) {}

    Parse bad(std::string why) {
        error_ = std::move(why);
        return Parse::Bad;
    }
    /// The bytes end inside the message: wait for more, unless they cannot come.
    Parse more(bool complete, size_t have) {
        if (complete) {
            return bad("truncated message");
        }
        if (have >= max_) {
            return bad("message larger than " + std::to_string(max_) + " bytes");
        }
        return Parse::NeedMore;
    }
    Parse object(const uint8_t* p, size_t n, size_t& off, bool complete, msgpack::object_handle& oh,
                 const char* what) {
        switch (unpackAt(p, n, off, oh)) {
            case Got::Ok:
                return Parse::Ok;
            case Got::More:
                return more(complete, n);
            case Got::Bad:
                break;
        }
        return bad(std::string("malformed ") + what);
    }

    /// A message after any encrypt/compress wrapper: type byte, msgpack objects, raw bytes.
    /// `complete`: p[0..n) is all there is (decrypted or decompressed).
    Parse body(const uint8_t* p, size_t n, bool complete, StreamMsg& m) {
        if (n == 0) {
            return more(complete, n);
        }
        m.type = static_cast<MsgType>(p[0]);
        size_t off = 1;
        msgpack::object_handle oh;
        Parse r = Parse::Ok;
        switch (m.type) {
            case MsgType::Ping:
                if ((r = object(p, n, off, complete, oh, "ping")) == Parse::Ok &&
                    !readPing(oh.get(), m.ping)) {
                    return bad("malformed ping");
                }
                break;
            case MsgType::Ack:
                if ((r = object(p, n, off, complete, oh, "ack")) == Parse::Ok &&
                    !readAck(oh.get(), m.ack)) {
                    return bad("malformed ack");
                }
                break;
            case MsgType::Err:
                if ((r = object(p, n, off, complete, oh, "error response")) == Parse::Ok &&
                    !readErr(oh.get(), m.err)) {
                    return bad("malformed error response");
                }
                break;
            case MsgType::PushPull:
                r = pushPull(p, n, off, complete, m.pushPull);
                break;
            case MsgType::User:
                r = user(p, n, off, complete, m.user);
                break;
            default:
                return bad("invalid msgType (" + std::to_string(p[0]) + ")");
        }
        if (r == Parse::Ok && off > max_) {
            return bad("message larger than " + std::to_string(max_) + " bytes");
        }
        return r;
    }

  private:
    Parse pushPull(const uint8_t* p, size_t n, size_t& off, bool complete, PushPull& pp) {
        msgpack::object_handle oh;
        Parse r = object(p, n, off, complete, oh, "push-pull header");
        if (r != Parse::Ok) {
            return r;
        }
        PushPullHeader h;
        if (!readPushPullHeader(oh.get(), h)) {
            return bad("malformed push-pull header");
        }
        if (h.userStateLen > max_) {
            return bad("push-pull user state larger than the limit");
        }
        pp.join = h.join;
        pp.nodes.clear();
        pp.nodes.reserve(std::min(h.nodes, n - off));  // each node takes bytes
        for (size_t i = 0; i < h.nodes; ++i) {
            if ((r = object(p, n, off, complete, oh, "push-pull node")) != Parse::Ok) {
                return r;
            }
            PushNodeState s;
            if (!readNodeState(oh.get(), s)) {
                return bad("malformed push-pull node");
            }
            pp.nodes.push_back(std::move(s));
        }
        if (off > max_ || h.userStateLen > max_ - off) {
            return bad("message larger than " + std::to_string(max_) + " bytes");
        }
        if (n - off < h.userStateLen) {
            return more(complete, n);
        }
        pp.userState.assign(p + off, p + off + h.userStateLen);
        off += h.userStateLen;
        return Parse::Ok;
    }

    Parse user(const uint8_t* p, size_t n, size_t& off, bool complete, Bytes& payload) {
        msgpack::object_handle oh;
        Parse r = object(p, n, off, complete, oh, "user message header");
        if (r != Parse::Ok) {
            return r;
        }
        size_t len = 0;
        if (!readUserMsgHeader(oh.get(), len)) {
            return bad("malformed user message header");
        }
        if (off > max_ || len > max_ - off) {
            return bad("message larger than " + std::to_string(max_) + " bytes");
        }
        if (n - off < len) {
            return more(complete, n);
        }
        payload.assign(p + off, p + off + len);
        off += len;
        return Parse::Ok;
    }

    size_t max_;
    std::string& error_;
};

}  // namespace

// ------------------------------------------------------------------------------------ encoders

namespace {

// Ping and IndirectPing end with the same omitempty fields (Go: SourceAddr, SourceNode,
// SourcePort, in key order), written only when set.
template <class M>
size_t sourceFields(const M& m) {
    return (m.sourceAddr.empty() ? 0u : 1u) + (m.sourceNode.empty() ? 0u : 1u) +
           (m.sourcePort == 0 ? 0u : 1u);
}
template <class M>
void writeSource(Writer& w, const M& m) {
    if (!m.sourceAddr.empty()) {
        w.str("SourceAddr");
        w.bytes(m.sourceAddr);
    }
    if (!m.sourceNode.empty()) {
        w.str("SourceNode");
        w.str(m.sourceNode);
    }
    if (m.sourcePort != 0) {
        w.str("SourcePort");
        w.uint(m.sourcePort);
    }
}

}  // namespace

Bytes encode(const Ping& m) {
    Bytes out = withType(MsgType::Ping);
    Writer w(out);
    w.map(2u + sourceFields(m));
    w.str("Node");
    w.str(m.node);
    w.str("SeqNo");
    w.uint(m.seqNo);
    writeSource(w, m);
    return out;
}

Bytes encode(const IndirectPing& m) {
    Bytes out = withType(MsgType::IndirectPing);
    Writer w(out);
    w.map(5u + sourceFields(m));
    w.str("Nack");
    w.boolean(m.nack);
    w.str("Node");
    w.str(m.node);
    w.str("Port");
    w.uint(m.port);
    w.str("SeqNo");
    w.uint(m.seqNo);
    writeSource(w, m);
    w.str("Target");
    w.bytes(m.target);
    return out;
}

Bytes encode(const Ack& m) {
    Bytes out = withType(MsgType::Ack);
    Writer w(out);
    w.map(2);
    w.str("Payload");
    w.bytes(m.payload);
    w.str("SeqNo");
    w.uint(m.seqNo);
    return out;
}

Bytes encode(const Nack& m) {
    Bytes out = withType(MsgType::Nack);
    Writer w(out);
    w.map(1);
    w.str("SeqNo");
    w.uint(m.seqNo);
    return out;
}

Bytes encode(const Alive& m) {
    Bytes out = withType(MsgType::Alive);
    Writer w(out);
    w.map(6);
    w.str("Addr");
    w.bytes(m.addr);
    w.str("Incarnation");
    w.uint(m.incarnation);
    w.str("Meta");
    w.bytes(m.meta);
    w.str("Node");
    w.str(m.node);
    w.str("Port");
    w.uint(m.port);
    w.str("Vsn");
    w.bytes(m.vsn);
    return out;
}

namespace {
Bytes encodeAccusation(MsgType t, uint32_t incarnation, const std::string& node,
                       const std::string& from) {
    Bytes out = withType(t);
    Writer w(out);
    w.map(3);
    w.str("From");
    w.str(from);
    w.str("Incarnation");
    w.uint(incarnation);
    w.str("Node");
    w.str(node);
    return out;
}
}  // namespace

Bytes encode(const Suspect& m) {
    return encodeAccusation(MsgType::Suspect, m.incarnation, m.node, m.from);
}

Bytes encode(const Dead& m) {
    return encodeAccusation(MsgType::Dead, m.incarnation, m.node, m.from);
}

Bytes encode(const PushPull& m) {
    Bytes out = withType(MsgType::PushPull);
    Writer w(out);
    w.map(3);
    w.str("Join");
    w.boolean(m.join);
    w.str("Nodes");
    w.uint(m.nodes.size());
    w.str("UserStateLen");
    w.uint(m.userState.size());
    for (const PushNodeState& s : m.nodes) {
        w.map(7);
        w.str("Addr");
        w.bytes(s.addr);
        w.str("Incarnation");
        w.uint(s.incarnation);
        w.str("Meta");
        w.bytes(s.meta);
        w.str("Name");
        w.str(s.name);
        w.str("Port");
        w.uint(s.port);
        w.str("State");
        w.uint(static_cast<uint8_t>(s.state));
        w.str("Vsn");
        w.bytes(s.vsn);
    }
    w.raw(m.userState.data(), m.userState.size());
    return out;
}

Bytes encode(const ErrResp& m) {
    Bytes out = withType(MsgType::Err);
    Writer w(out);
    w.map(1);
    w.str("Error");
    w.str(m.error);
    return out;
}

Bytes encodeUser(const Bytes& payload) {
    Bytes out = withType(MsgType::User);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

Bytes encodeUserStream(const Bytes& payload) {
    Bytes out = withType(MsgType::User);
    Writer w(out);
    w.map(1);
    w.str("UserMsgLen");
    w.uint(payload.size());
    w.raw(payload.data(), payload.size());
    return out;
}

// ------------------------------------------------------------------------------------ decoders

bool withinLimits(const Alive& m) {
    return m.node.size() <= kNameMaxSize && m.meta.size() <= kMetaMaxSize;
}
bool withinLimits(const PushNodeState& m) {
    return m.name.size() <= kNameMaxSize && m.meta.size() <= kMetaMaxSize;
}
bool withinLimits(const Suspect& m) {
    return m.node.size() <= kNameMaxSize && m.from.size() <= kNameMaxSize;
}
bool withinLimits(const Dead& m) {
    return m.node.size() <= kNameMaxSize && m.from.size() <= kNameMaxSize;
}

std::string unusableAddress(const Bytes& addr) {
    if (addr.size() != 4) {
        return "not an IPv4 address";
    }
    if (addr[0] == 0) {
        return "an unspecified address (0.0.0.0/8)";
    }
    if (addr[0] >= 224 && addr[0] < 240) {
        return "a multicast address";
    }
    if (addr[0] >= 240) {
        return "a broadcast or reserved address";
    }
    return "";
}

std::string unusableAddress(const std::string& ip) {
    in_addr a{};
    if (ip.size() > 15 || inet_pton(AF_INET, ip.c_str(), &a) != 1) {
        return "not an IPv4 address";
    }
    const auto* b = reinterpret_cast<const uint8_t*>(&a);
    return unusableAddress(Bytes(b, b + 4));
}

bool decode(const uint8_t* p, size_t n, Ping& out) { return decodeWith(p, n, out, readPing); }
bool decode(const uint8_t* p, size_t n, IndirectPing& out) {
    return decodeWith(p, n, out, readIndirectPing);
}
bool decode(const uint8_t* p, size_t n, Ack& out) { return decodeWith(p, n, out, readAck); }
bool decode(const uint8_t* p, size_t n, Nack& out) { return decodeWith(p, n, out, readNack); }
bool decode(const uint8_t* p, size_t n, Alive& out) { return decodeWith(p, n, out, readAlive); }
bool decode(const uint8_t* p, size_t n, Suspect& out) {
    return decodeWith(p, n, out, readAccusation<Suspect>);
}
bool decode(const uint8_t* p, size_t n, Dead& out) {
    return decodeWith(p, n, out, readAccusation<Dead>);
}
bool decode(const uint8_t* p, size_t n, ErrResp& out) { return decodeWith(p, n, out, readErr); }

// -------------------------------------------------------------------------------- compound, CRC

Bytes compound(const std::vector<Bytes>& parts) {
    if (parts.size() > 255) {
        return {};
    }
    Bytes out = withType(MsgType::Compound);
    out.push_back(static_cast<uint8_t>(parts.size()));
    for (const Bytes& part : parts) {
        if (part.empty() || part.size() > 0xffff) {
            return {};
        }
        out.push_back(static_cast<uint8_t>(part.size() >> 8));
        out.push_back(static_cast<uint8_t>(part.size()));
    }
    for (const Bytes& part : parts) {
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
}

bool splitCompound(const uint8_t* p, size_t n,
                   std::vector<std::pair<const uint8_t*, size_t>>& parts, size_t& truncated) {
    parts.clear();
    truncated = 0;
    if (p == nullptr || n < 1) {
        return false;
    }
    const size_t count = p[0];
    if (n - 1 < count * 2) {
        return false;
    }
    size_t off = 1 + count * 2;
    for (size_t i = 0; i < count; ++i) {
        const size_t len = static_cast<size_t>(p[1 + 2 * i]) << 8 | p[2 + 2 * i];
        if (n - off < len) {
            truncated = count - i;
            break;
        }
        if (len > 0) {  // Go would index an empty part; it can only be dropped
            parts.emplace_back(p + off, len);
        }
        off += len;
    }
    return true;
}

Bytes withCrc(const Bytes& msg) {
    Bytes out(5);
    out[0] = static_cast<uint8_t>(MsgType::HasCrc);
    putBe32(out.data() + 1, static_cast<uint32_t>(crc32_z(0, msg.data(), msg.size())));
    out.insert(out.end(), msg.begin(), msg.end());
    return out;
}

bool checkCrc(const uint8_t* p, size_t n, const uint8_t*& inner, size_t& innerLen) {
    if (p == nullptr || n < 5) {
        return false;
    }
    if (getBe32(p) != static_cast<uint32_t>(crc32_z(0, p + 4, n - 4))) {
        return false;
    }
    inner = p + 4;
    innerLen = n - 4;
    return true;
}

// ------------------------------------------------------------------------------------ LZW

Bytes lzwCompress(const uint8_t* p, size_t n) {
    // Go's compress/lzw Writer (Go 1.17+): a leading CLEAR, a hash table of key<<12|code
    // entries with linear probing, CLEAR when hi reaches 4095, the last code, then EOF.
    Bytes out;
    out.reserve(n / 2 + 8);
    BitWriter w(out);
    w.write(kClear);
    if (p == nullptr || n == 0) {
        w.write(kEof);
        w.flush();
        return out;
    }
    // At most min(n, 4096) entries: a table twice that size (Go always uses 16384 slots; the
    // size changes where entries sit, never which codes come out).
    uint32_t tableSize = 64;
    while (tableSize < 4 * (1u << kMaxWidth) && tableSize < 2 * n) {
        tableSize <<= 1;
    }
    const uint32_t tableMask = tableSize - 1;
    auto table = std::make_unique<uint32_t[]>(tableSize);  // 0: empty (codes are >= 258)
    uint32_t hi = kEof;
    uint32_t overflow = 1u << 9;
    auto incHi = [&]() {  // false: the table was full and has been reset
        ++hi;
        if (hi == overflow) {
            ++w.width;
            overflow <<= 1;
        }
        if (hi == kMaxCode) {
            w.write(kClear);
            w.width = 9;
            hi = kEof;
            overflow = 1u << 9;
            std::memset(table.get(), 0, tableSize * sizeof(uint32_t));
            return false;
        }
        return true;
    };
    uint32_t code = p[0];
    for (size_t i = 1; i < n; ++i) {
        const uint32_t literal = p[i];
        const uint32_t key = code << 8 | literal;
        uint32_t hash = ((key >> 12) ^ key) & tableMask;
        bool hit = false;
        for (uint32_t h = hash, t = table[hash]; t != 0;) {
            if (key == t >> 12) {
                code = t & kMaxCode;
                hit = true;
                break;
            }
            h = (h + 1) & tableMask;
            t = table[h];
        }
        if (hit) {
            continue;
        }
        w.write(code);
        code = literal;
        if (!incHi()) {
            continue;
        }
        while (table[hash] != 0) {
            hash = (hash + 1) & tableMask;
        }
        table[hash] = key << 12 | hi;
    }
    w.write(code);
    incHi();
    w.write(kEof);
    w.flush();
    return out;
}

bool lzwDecompress(const uint8_t* p, size_t n, Bytes& out, size_t maxOut) {
    // Go's compress/lzw Reader. Codes > hi are corrupt; the stream must end with EOF.
    try {
        constexpr uint32_t kInvalid = 0xffff;
        std::array<uint16_t, kMaxCode + 1> prefix{};
        std::array<uint8_t, kMaxCode + 1> suffix{};
        std::array<uint8_t, kMaxCode + 2> expand{};
        Bytes res;
        uint32_t bits = 0;
        unsigned nBits = 0;
        unsigned width = 9;
        uint32_t hi = kEof;
        uint32_t overflow = 1u << 9;
        uint32_t last = kInvalid;
        size_t pos = 0;
        for (;;) {
            while (nBits < width) {
                if (p == nullptr || pos >= n) {
                    return false;  // unexpected EOF
                }
                bits |= static_cast<uint32_t>(p[pos++]) << nBits;
                nBits += 8;
            }
            const uint32_t code = bits & ((1u << width) - 1);
            bits >>= width;
            nBits -= width;
            if (code < kClear) {
                if (res.size() >= maxOut) {
                    return false;
                }
                res.push_back(static_cast<uint8_t>(code));
                if (last != kInvalid) {
                    suffix[hi] = static_cast<uint8_t>(code);
                    prefix[hi] = static_cast<uint16_t>(last);
                }
            } else if (code == kClear) {
                width = 9;
                hi = kEof;
                overflow = 1u << 9;
                last = kInvalid;
                continue;
            } else if (code == kEof) {
                break;
            } else if (code <= hi) {
                size_t i = expand.size();
                uint32_t c = code;
                if (code == hi && last != kInvalid) {
                    // KwKwK: the last expansion followed by its own first byte.
                    c = last;
                    while (c >= kClear) {
                        c = prefix[c];
                    }
                    expand[--i] = static_cast<uint8_t>(c);
                    c = last;
                }
                while (c >= kClear) {
                    if (i <= 1) {
                        return false;
                    }
                    expand[--i] = suffix[c];
                    c = prefix[c];
                }
                expand[--i] = static_cast<uint8_t>(c);
                const size_t len = expand.size() - i;
                if (len > maxOut - res.size()) {
                    return false;
                }
                res.insert(res.end(), expand.begin() + static_cast<std::ptrdiff_t>(i),
                           expand.end());
                if (last != kInvalid) {
                    suffix[hi] = static_cast<uint8_t>(c);
                    prefix[hi] = static_cast<uint16_t>(last);
                }
            } else {
                return false;  // invalid code
            }
            last = code;
            ++hi;
            if (hi >= overflow) {
                if (width == kMaxWidth) {
                    last = kInvalid;  // the table is full until the next CLEAR
                    --hi;
                } else {
                    ++width;
                    overflow <<= 1;
                }
            }
        }
        out = std::move(res);
        return true;
    } catch (...) {
        return false;
    }
}

Bytes compressMsg(const Bytes& msg) {
    Bytes buf = lzwCompress(msg.data(), msg.size());
    Bytes out = withType(MsgType::Compress);
    Writer w(out);
    w.map(2);
    w.str("Algo");
    w.uint(0);
    w.str("Buf");
    w.str(buf.data(), buf.size());
    return out;
}

bool decompressMsg(const uint8_t* p, size_t n, Bytes& out, size_t maxOut) {
    try {
        msgpack::object_handle oh;
        size_t off = 0;
        if (unpackAt(p, n, off, oh) != Got::Ok) {
            return false;
        }
        uint64_t algo = 0;
        const uint8_t* buf = nullptr;
        size_t len = 0;
        if (!forFields(oh.get(), {"Algo", "Buf"},
                       [&](std::string_view k, const Obj& v) {
                           if (k == "Algo") return getUint(v, INT64_MAX, algo);
                           if (k == "Buf") return getView(v, buf, len);
                           return true;
                       }) ||
            algo != 0) {
            return false;
        }
        Bytes res;
        if (!lzwDecompress(buf, len, res, maxOut) || res.empty()) {
            return false;
        }
        out = std::move(res);
        return true;
    } catch (...) {
        return false;
    }
}

// ------------------------------------------------------------------------------------ keyring

bool Keyring::add(const Bytes& key) {
    if (gcmCipher(key.size()) == nullptr) {
        return false;
    }
    if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) {
        keys_.push_back(key);
    }
    return true;
}

bool Keyring::use(const Bytes& key) {
    auto it = std::find(keys_.begin(), keys_.end(), key);
    if (it == keys_.end()) {
        return false;
    }
    std::rotate(keys_.begin(), it, it + 1);  // to the front, the others in their order
    return true;
}

bool Keyring::remove(const Bytes& key) {
    auto it = std::find(keys_.begin(), keys_.end(), key);
    if (it == keys_.end() || it == keys_.begin()) {
        return false;
    }
    keys_.erase(it);
    return true;
}

bool Keyring::fromBase64(const std::string& b64, Bytes& key) { return base64Decode(b64, key); }

bool Keyring::addBase64(const std::string& b64) {
    Bytes key;
    return base64Decode(b64, key) && add(key);
}

Bytes Keyring::encryptUdp(const uint8_t* p, size_t n) const {
    Bytes out;
    if (keys_.empty() || (p == nullptr && n > 0) || !sealPayload(keys_[0], p, n, nullptr, 0, out)) {
        return {};
    }
    return out;
}

bool Keyring::decryptUdp(const uint8_t* p, size_t n, Bytes& out) const {
    try {
        return openPayload(keys_, p, n, nullptr, 0, out);
    } catch (...) {
        return false;
    }
}

Bytes Keyring::encryptTcp(const uint8_t* p, size_t n) const {
    if (keys_.empty() || (p == nullptr && n > 0) || n > 0xffffffffu - kVsnOverhead) {
        return {};
    }
    Bytes out(5);
    out[0] = static_cast<uint8_t>(MsgType::Encrypt);
    putBe32(out.data() + 1, static_cast<uint32_t>(kVsnOverhead + n));
    const Bytes header = out;
    if (!sealPayload(keys_[0], p, n, header.data(), header.size(), out)) {
        return {};
    }
    return out;
}

bool Keyring::decryptTcp(const uint8_t* header, const uint8_t* body, size_t n, Bytes& out) const {
    try {
        if (header == nullptr || header[0] != static_cast<uint8_t>(MsgType::Encrypt) ||
            getBe32(header + 1) != n) {
            return false;
        }
        return openPayload(keys_, body, n, header, 5, out);
    } catch (...) {
        return false;
    }
}

// ------------------------------------------------------------------------------------ streams

Parse parseStream(const uint8_t* p, size_t n, const Keyring* keys, size_t maxBytes, StreamMsg& out,
                  std::string& error) {
    try {
        StreamParser sp(maxBytes, error);
        if (p == nullptr || n == 0) {
            return sp.more(false, 0);
        }
        const bool haveKeys = keys != nullptr && !keys->empty();
        StreamMsg m;
        Bytes plain;  // decrypted
        const uint8_t* q = p;
        size_t qn = n;
        bool complete = false;
        if (p[0] == static_cast<uint8_t>(MsgType::Encrypt)) {
            if (!haveKeys) {
                return sp.bad("Remote state is encrypted and encryption is not configured");
            }
            if (n < 5) {
                return sp.more(false, n);
            }
            const uint32_t len = getBe32(p + 1);
            if (len > maxBytes) {
                return sp.bad("Remote node state is larger than limit (" + std::to_string(len) +
                              ")");
            }
            if (n - 5 < len) {
                return Parse::NeedMore;  // 5 + len bytes in all, within the limit
            }
            if (!keys->decryptTcp(p, p + 5, len, plain)) {
                return sp.bad("No installed keys could decrypt the message");
            }
            m.encrypted = true;
            q = plain.data();
            qn = plain.size();
            complete = true;
        } else if (haveKeys) {
            return sp.bad("Encryption is configured but remote state is not encrypted");
        }
        Bytes inflated;
        if (qn > 0 && q[0] == static_cast<uint8_t>(MsgType::Compress)) {
            msgpack::object_handle oh;
            size_t off = 1;
            Parse r = sp.object(q, qn, off, complete, oh, "compress header");
            if (r != Parse::Ok) {
                return r;
            }
            if (!complete && off > maxBytes) {
                return sp.bad("message larger than " + std::to_string(maxBytes) + " bytes");
            }
            if (!decompressMsg(q + 1, off - 1, inflated, maxBytes)) {
                return sp.bad("corrupt compressed message");
            }
            m.compressed = true;
            q = inflated.data();
            qn = inflated.size();
            complete = true;
        }
        Parse r = sp.body(q, qn, complete, m);
        if (r == Parse::Ok) {
            out = std::move(m);
            error.clear();
        }
        return r;
    } catch (...) {
        error = "out of memory";
        return Parse::Bad;
    }
}

// ------------------------------------------------------------------------------------ serf

Bytes encodeTags(const std::map<std::string, std::string>& tags) {
    if (tags.empty()) {
        return {};
    }
    Bytes out{0xff};
    Writer w(out);
    w.map(tags.size());
    for (const auto& [k, v] : tags) {
        w.str(k);
        w.str(v);
    }
    return out;
}

bool decodeTags(const Bytes& meta, std::map<std::string, std::string>& out) {
    try {
        if (meta.empty() || meta[0] != 0xff) {
            out = {{"role", std::string(meta.begin(), meta.end())}};
            return true;
        }
        msgpack::object_handle oh;
        size_t off = 1;
        if (unpackAt(meta.data(), meta.size(), off, oh) != Got::Ok) {
            return false;
        }
        const Obj& o = oh.get();
        std::map<std::string, std::string> tags;
        if (o.type == mt::MAP) {
            for (uint32_t i = 0; i < o.via.map.size; ++i) {
                std::string k;
                std::string v;
                if (!getStr(o.via.map.ptr[i].key, k) || !getStr(o.via.map.ptr[i].val, v)) {
                    return false;
                }
                tags[std::move(k)] = std::move(v);
            }
        } else if (o.type != mt::NIL) {
            return false;
        }
        out = std::move(tags);
        return true;
    } catch (...) {
        return false;
    }
}

Bytes serfLeaveIntent(uint64_t ltime, const std::string& node) {
    Bytes out{0};
    Writer w(out);
    w.map(3);
    w.str("LTime");
    w.uint(ltime);
    w.str("Node");
    w.str(node);
    w.str("Prune");
    w.boolean(false);
    return out;
}

Bytes serfJoinIntent(uint64_t ltime, const std::string& node) {
    Bytes out{1};
    Writer w(out);
    w.map(2);
    w.str("LTime");
    w.uint(ltime);
    w.str("Node");
    w.str(node);
    return out;
}

bool serfLTime(const uint8_t* p, size_t n, uint64_t& ltime) {
    // leave 0, join 1, push-pull 2, user event 3, query 4, query response 5: LTime is the
    // first field of each.
    if (p == nullptr || n < 2 || p[0] > 5) {
        return false;
    }
    try {
        msgpack::object_handle oh;
        size_t off = 1;
        if (unpackAt(p, n, off, oh) != Got::Ok) {
            return false;
        }
        bool found = false;
        uint64_t v = 0;
        if (!forFields(oh.get(), {"LTime"},
                       [&](std::string_view k, const Obj& o) {
                           if (k != "LTime") {
                               return true;
                           }
                           found = true;
                           return getUint(o, UINT64_MAX, v);
                       }) ||
            !found) {
            return false;
        }
        ltime = v;
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace mp::gossip
