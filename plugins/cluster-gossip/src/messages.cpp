// SPDX-License-Identifier: Apache-2.0
// memberlist's messages (wire.hpp): each one encoded byte-exact and decoded with its limits, TCP
// streams (push-pull, user messages, errors) parsed as their bytes arrive, and serf's tags and
// intents. Nothing here lets an exception out.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "msgpack_io.hpp"

namespace mp::gossip {

using namespace detail;  // the wire's own msgpack helpers (msgpack_io.hpp)

namespace {

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
    Bytes out;
    out.reserve(1 + payload.size());  // (GCC 12 misreads an insert after a 1-byte vector)
    out.push_back(static_cast<uint8_t>(MsgType::User));
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
