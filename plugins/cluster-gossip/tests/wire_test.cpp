// SPDX-License-Identifier: Apache-2.0
// memberlist's wire format against real traffic: the examples of docs/gossip-wire.md byte for
// byte, and data/vectors.txt, datagrams and streams captured between Debian 12 serf 0.9.4 agents
// (and a Python test node): every one is decoded, and what the agents sent is re-encoded (and
// re-compressed) to the same bytes. Then LZW, AES-GCM, compound, CRC, stream parsing at every
// prefix, serf's tags and Lamport times, and random garbage through every decoder.
#include "wire.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace mp::gossip;

namespace {

Bytes hex(std::string_view s) {
    Bytes out;
    auto nib = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (size_t i = 0; i + 1 < s.size(); i += 2) {
        int hi = nib(s[i]);
        int lo = nib(s[i + 1]);
        REQUIRE(hi >= 0);
        REQUIRE(lo >= 0);
        out.push_back(static_cast<uint8_t>(hi << 4 | lo));
    }
    REQUIRE(s.size() % 2 == 0);
    return out;
}

std::string toHex(const Bytes& b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (uint8_t c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }
Bytes slice(const uint8_t* p, size_t n) { return Bytes(p, p + n); }

// The two keys of the encrypted captures (serf keygen: 32 bytes, AES-256).
const char* const kKey1 = "uFu37q5BAkLbvwi9nOmdNBdSRHRAaMlVd58vOPVXT7g=";
const char* const kKey2 = "V1j/+6DUMzI2A1UEzhdIChou7ckSWGGdHV+VKHZDQaM=";

Keyring ring(std::initializer_list<const char*> keys) {
    Keyring k;
    for (const char* b64 : keys) {
        REQUIRE(k.addBase64(b64));
    }
    return k;
}

struct Vector {
    std::string proto;   // udp | tcp
    std::string origin;  // go: sent by a serf agent; fake: by the Python test node
    std::string expect;  // what describe() must say
    Bytes data;
};

std::filesystem::path dataDir() {
#ifdef MP_GOSSIP_TEST_DATA
    return MP_GOSSIP_TEST_DATA;
#else
    return std::filesystem::path(__FILE__).parent_path() / "data";
#endif
}

const std::vector<Vector>& vectors() {
    static const std::vector<Vector> all = [] {
        std::vector<Vector> v;
        std::ifstream in(dataDir() / "vectors.txt");
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') {
                continue;
            }
            std::istringstream ls(line);
            Vector x;
            std::string h;
            ls >> x.proto >> x.origin >> x.expect >> h;
            x.data = hex(h);
            v.push_back(std::move(x));
        }
        return v;
    }();
    return all;
}

const char* const kSerfTypes[] = {"leave",       "join",          "pushPull",         "userEvent",
                                  "query",       "queryResponse", "conflictResponse", "keyRequest",
                                  "keyResponse", "relay"};

std::string serfDesc(const uint8_t* p, size_t n) {
    if (n == 0) {
        return "EMPTY";
    }
    std::string s = p[0] < 10 ? kSerfTypes[p[0]] : "serf" + std::to_string(p[0]);
    uint64_t lt = 0;
    if (serfLTime(p, n, lt)) {
        s += "@" + std::to_string(lt);
    }
    return s;
}

/// A UDP message (after decryption) described like extract.py does. With `reencode`, every
/// layer and message is re-encoded and must give back the very bytes (what Go sent).
std::string describe(const uint8_t* p, size_t n, bool reencode) {
    if (n == 0) {
        return "EMPTY";
    }
    const Bytes whole = slice(p, n);
    const uint8_t* b = p + 1;
    const size_t bn = n - 1;
    switch (static_cast<MsgType>(p[0])) {
        case MsgType::HasCrc: {
            const uint8_t* in = nullptr;
            size_t len = 0;
            if (!checkCrc(b, bn, in, len)) {
                return "BADCRC";
            }
            if (reencode) {
                CHECK(withCrc(slice(in, len)) == whole);
            }
            return "crc(" + describe(in, len, reencode) + ")";
        }
        case MsgType::Compound: {
            std::vector<std::pair<const uint8_t*, size_t>> parts;
            size_t truncated = 99;
            if (!splitCompound(b, bn, parts, truncated)) {
                return "BADCOMPOUND";
            }
            CHECK(truncated == 0);
            std::string s = "compound[";
            std::vector<Bytes> raw;
            for (size_t i = 0; i < parts.size(); ++i) {
                s += (i ? "," : "") + describe(parts[i].first, parts[i].second, reencode);
                raw.push_back(slice(parts[i].first, parts[i].second));
            }
            if (reencode) {
                CHECK(compound(raw) == whole);
            }
            return s + "]";
        }
        case MsgType::Compress: {
            Bytes inner;
            if (!decompressMsg(b, bn, inner, 1 << 20)) {
                return "BADLZW";
            }
            if (reencode) {
                CHECK(compressMsg(inner) == whole);  // Go's LZW, byte for byte
            }
            return "lzw(" + describe(inner.data(), inner.size(), reencode) + ")";
        }
        case MsgType::User:
            if (reencode) {
                CHECK(encodeUser(slice(b, bn)) == whole);
            }
            return "user:" + serfDesc(b, bn);
        case MsgType::Ping: {
            Ping m;
            if (!decode(b, bn, m)) {
                return "BADPING";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "ping#" + std::to_string(m.seqNo) + ":" + m.node;
        }
        case MsgType::IndirectPing: {
            IndirectPing m;
            if (!decode(b, bn, m)) {
                return "BADINDIRECT";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "indirectPing#" + std::to_string(m.seqNo) + ":" + m.node;
        }
        case MsgType::Ack: {
            Ack m;
            if (!decode(b, bn, m)) {
                return "BADACK";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "ack#" + std::to_string(m.seqNo) + ":" + std::to_string(m.payload.size());
        }
        case MsgType::Nack: {
            Nack m;
            if (!decode(b, bn, m)) {
                return "BADNACK";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "nack#" + std::to_string(m.seqNo);
        }
        case MsgType::Alive: {
            Alive m;
            if (!decode(b, bn, m)) {
                return "BADALIVE";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "alive:" + m.node + "@" + std::to_string(m.incarnation);
        }
        case MsgType::Suspect: {
            Suspect m;
            if (!decode(b, bn, m)) {
                return "BADSUSPECT";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "suspect:" + m.node + "@" + std::to_string(m.incarnation);
        }
        case MsgType::Dead: {
            Dead m;
            if (!decode(b, bn, m)) {
                return "BADDEAD";
            }
            if (reencode) {
                CHECK(toHex(encode(m)) == toHex(whole));
            }
            return "dead:" + m.node + "@" + std::to_string(m.incarnation);
        }
        default:
            return "TYPE" + std::to_string(p[0]);
    }
}

std::string describe(const StreamMsg& m) {
    std::string s;
    switch (m.type) {
        case MsgType::PushPull: {
            s = "pushPull:join=" + std::to_string(m.pushPull.join ? 1 : 0) + ":nodes=";
            for (size_t i = 0; i < m.pushPull.nodes.size(); ++i) {
                s += (i ? "/" : "") + m.pushPull.nodes[i].name;
            }
            s += ":user=" + std::to_string(m.pushPull.userState.size());
            uint64_t lt = 0;
            if (serfLTime(m.pushPull.userState.data(), m.pushPull.userState.size(), lt)) {
                s += "@" + std::to_string(lt);
            }
            break;
        }
        case MsgType::Ping:
            s = "ping#" + std::to_string(m.ping.seqNo) + ":" + m.ping.node;
            break;
        case MsgType::Ack:
            s = "ack#" + std::to_string(m.ack.seqNo) + ":" + std::to_string(m.ack.payload.size());
            break;
        case MsgType::User:
            s = "user:" + serfDesc(m.user.data(), m.user.size());
            break;
        case MsgType::Err:
            s = "err:" + std::to_string(m.err.error.size());
            break;
        default:
            s = "TYPE" + std::to_string(static_cast<int>(m.type));
    }
    return m.compressed ? "lzw(" + s + ")" : s;
}

/// Which single key decrypts a UDP datagram: 1, 2, or 0 for none.
int udpKey(const Bytes& d, Bytes& plain) {
    if (ring({kKey1}).decryptUdp(d.data(), d.size(), plain)) return 1;
    if (ring({kKey2}).decryptUdp(d.data(), d.size(), plain)) return 2;
    return 0;
}

uint32_t lcgNext(uint32_t& x) {
    x = (x * 1103515245u + 12345u) & 0x7fffffffu;
    return x;
}

Bytes lcgBytes(size_t n, const Bytes& alphabet) {
    uint32_t x = 12345;
    Bytes out;
    for (size_t i = 0; i < n; ++i) {
        out.push_back(alphabet[(lcgNext(x) >> 16) % alphabet.size()]);
    }
    return out;
}

}  // namespace

// ------------------------------------------------------------------------------ encoders

TEST_CASE("encoders write what Go writes (the SPEC examples, captured)") {
    const Bytes local = {127, 0, 0, 10};
    SUBCASE("ping, 67 bytes, Source* present") {
        Ping p{1, "node1", local, 7946, "node0"};
        CHECK(toHex(encode(p)) ==
              "0085a44e6f6465a56e6f646531a55365714e6f01aa536f7572636541646472a47f00000aaa536f7572"
              "63654e6f6465a56e6f646530aa536f75726365506f7274cd1f0a");
    }
    SUBCASE("ping: the Source* fields are omitempty") {
        // The stream ping of §7 (ping{Node:node0, SeqNo:1246}).
        CHECK(toHex(encode(Ping{1246, "node0", {}, 0, ""})) ==
              "0082a44e6f6465a56e6f646530a55365714e6fcd04de");
    }
    SUBCASE("nack") { CHECK(toHex(encode(Nack{0x664})) == "0b81a55365714e6fcd0664"); }
    SUBCASE("ack: an empty payload is Go's nil slice (c0)") {
        CHECK(toHex(encode(Ack{5, {}})) == "0282a75061796c6f6164c0a55365714e6f05");
        // The stream ack an agent sent (inside lzw, §5.5).
        CHECK(toHex(encode(Ack{1634, {}})) == "0282a75061796c6f6164c0a55365714e6fcd0662");
    }
    SUBCASE("indirect ping") {
        IndirectPing m{0x663, {127, 0, 0, 11}, 7946, "node1", true, {127, 0, 0, 20}, 7946, "fake1"};
        CHECK(toHex(encode(m)) ==
              "0188a44e61636bc3a44e6f6465a56e6f646531a4506f7274cd1f0aa55365714e6fcd0663aa536f7572"
              "636541646472a47f000014aa536f757263654e6f6465a566616b6531aa536f75726365506f7274cd1f"
              "0aa6546172676574a47f00000b");
    }
    SUBCASE("alive, gossiped with a CRC") {
        Alive a{
            1,   "fake1", {127, 0, 0, 20}, 7946, hex("ff82a4726f6c65a466616b65a46c616e67a27079"),
            kVsn};
        CHECK(toHex(withCrc(encode(a))) ==
              "0c5f13abbd0486a441646472a47f000014ab496e6361726e6174696f6e01a44d657461b4ff82a4726f"
              "6c65a466616b65a46c616e67a27079a44e6f6465a566616b6531a4506f7274cd1f0aa356736ea60105"
              "02020505");
    }
    SUBCASE("suspect and dead") {
        CHECK(toHex(encode(Suspect{1, "node1", "node0"})) ==
              "0383a446726f6da56e6f646530ab496e6361726e6174696f6e01a44e6f6465a56e6f646531");
        CHECK(toHex(encode(Dead{1, "node2", "node2"})) ==
              "0583a446726f6da56e6f646532ab496e6361726e6174696f6e01a44e6f6465a56e6f646532");
    }
    SUBCASE("push-pull join (accepted by serf)") {
        PushPull pp;
        pp.join = true;
        pp.nodes.push_back({"fake1",
                            {127, 0, 0, 20},
                            7946,
                            hex("ff82a4726f6c65a466616b65a46c616e67a27079"),
                            1,
                            State::Alive,
                            kVsn});
        CHECK(toHex(encode(pp)) ==
              "0683a44a6f696ec3a54e6f64657301ac5573657253746174654c656e0087a441646472a47f000014ab"
              "496e6361726e6174696f6e01a44d657461b4ff82a4726f6c65a466616b65a46c616e67a27079a44e61"
              "6d65a566616b6531a4506f7274cd1f0aa5537461746500a356736ea6010502020505");
    }
    SUBCASE("err: 58 characters are str16, as Go writes them (never str8)") {
        CHECK(
            toHex(encode(ErrResp{"Remote state is encrypted and encryption is not configured"})) ==
            "0d81a54572726f72da003a" +
                toHex(text("Remote state is encrypted and encryption is not configured")));
        Bytes e = encode(ErrResp{std::string(300, 'x')});
        CHECK(toHex(slice(e.data(), 11)) == "0d81a54572726f72da012c");
        Bytes big = encode(ErrResp{std::string(70000, 'y')});
        CHECK(toHex(slice(big.data(), 13)) == "0d81a54572726f72db00011170");
    }
    SUBCASE("user messages, UDP and stream forms") {
        Bytes event =
            hex("0384a24343c2a54c54696d6532a44e616d65a87463706576656e74a75061796c6f6164a6"
                "766961544350");
        CHECK(toHex(encodeUserStream(event)) == "0881aa557365724d73674c656e2a" + toHex(event));
        CHECK(encodeUser(event) == [&] {
            Bytes b{8};
            b.insert(b.end(), event.begin(), event.end());
            return b;
        }());
    }
    SUBCASE("integers take the smallest unsigned form") {
        CHECK(toHex(encode(Nack{0})) == "0b81a55365714e6f00");
        CHECK(toHex(encode(Nack{127})) == "0b81a55365714e6f7f");
        CHECK(toHex(encode(Nack{128})) == "0b81a55365714e6fcc80");
        CHECK(toHex(encode(Nack{65535})) == "0b81a55365714e6fcdffff");
        CHECK(toHex(encode(Nack{65536})) == "0b81a55365714e6fce00010000");
        CHECK(toHex(encode(Nack{0xffffffffu})) == "0b81a55365714e6fceffffffff");
        CHECK(toHex(serfJoinIntent(1ull << 40, "n")) ==
              "0182a54c54696d65cf0000010000000000a44e6f6465a16e");
    }
}

// ------------------------------------------------------------------------------ decoders

TEST_CASE("decoders read the SPEC examples and what Go accepts") {
    SUBCASE("ack with an empty str payload (what our Python node sent) and with nil") {
        Ack a;
        Bytes empty = hex("82a75061796c6f6164a0a55365714e6f05");
        REQUIRE(decode(empty.data(), empty.size(), a));
        CHECK(a.seqNo == 5);
        CHECK(a.payload.empty());
        Bytes nil = hex("82a75061796c6f6164c0a55365714e6f05");
        REQUIRE(decode(nil.data(), nil.size(), a));
        CHECK(a.payload.empty());
    }
    SUBCASE("indirect ping round trip") {
        Bytes m = hex(
            "0188a44e61636bc3a44e6f6465a56e6f646531a4506f7274cd1f0aa55365714e6fcd0663aa536f757263"
            "6541646472a47f000014aa536f757263654e6f6465a566616b6531aa536f75726365506f7274cd1f0aa6"
            "546172676574a47f00000b");
        IndirectPing ip;
        REQUIRE(decode(m.data() + 1, m.size() - 1, ip));
        CHECK(ip.seqNo == 0x663);
        CHECK(ip.target == Bytes{127, 0, 0, 11});
        CHECK(ip.port == 7946);
        CHECK(ip.node == "node1");
        CHECK(ip.nack);
        CHECK(ip.sourceAddr == Bytes{127, 0, 0, 20});
        CHECK(ip.sourcePort == 7946);
        CHECK(ip.sourceNode == "fake1");
        CHECK(encode(ip) == m);
    }
    SUBCASE("err") {
        Bytes m = hex("81a54572726f72da003a" +
                      toHex(text("Remote state is encrypted and encryption is not configured")));
        ErrResp e;
        REQUIRE(decode(m.data(), m.size(), e));
        CHECK(e.error == "Remote state is encrypted and encryption is not configured");
    }
    // msgpack_probe.py: the encodings a Go agent accepted or refused.
    auto ping = [](const std::string& h, Ping& p) {
        Bytes b = hex(h);
        return decode(b.data(), b.size(), p);
    };
    Ping p;
    SUBCASE("str8 in a string field, bin8 in a []byte field") {
        REQUIRE(
            ping("83"
                 "a44e6f6465d9056e6f646531"             // Node: str8
                 "a55365714e6f07"                       // SeqNo
                 "aa536f7572636541646472c4047f00000a",  // SourceAddr: bin8
                 p));
        CHECK(p.node == "node1");
        CHECK(p.sourceAddr == Bytes{127, 0, 0, 10});
    }
    SUBCASE("bin in a string field is refused") {
        CHECK_FALSE(ping("82a44e6f6465c4056e6f646531a55365714e6f01", p));
    }
    SUBCASE("any integer family that fits, never negative, never overflowing") {
        REQUIRE(ping("81a55365714e6fcf0000000000000009", p));
        CHECK(p.seqNo == 9);
        REQUIRE(ping("81a55365714e6fd20000000a", p));
        CHECK(p.seqNo == 10);
        CHECK_FALSE(ping("81a55365714e6fff", p));                                  // -1
        CHECK_FALSE(ping("81a55365714e6fcf0000000100000000", p));                  // > uint32
        CHECK_FALSE(ping("82a55365714e6f01aa536f75726365506f7274ce00010000", p));  // port
        CHECK_FALSE(ping("81a55365714e6fcb3ff0000000000000", p));                  // float
    }
    SUBCASE("keys are case-sensitive, unknown keys are skipped, missing ones are zero") {
        REQUIRE(ping("82a57365716e6f05a3466f6f93010203", p));
        CHECK(p.seqNo == 0);
        CHECK(p.node.empty());
    }
    SUBCASE("a struct may be a positional array, extra elements skipped") {
        REQUIRE(ping("9307a56e6f646531a47f00000a", p));  // [SeqNo, Node, SourceAddr]
        CHECK(p.seqNo == 7);
        CHECK(p.node == "node1");
        CHECK(p.sourceAddr == Bytes{127, 0, 0, 10});
        Nack n;
        Bytes b = hex("9205c0");
        REQUIRE(decode(b.data(), b.size(), n));
        CHECK(n.seqNo == 5);
    }
    SUBCASE("trailing bytes are ignored; truncation, nil and scalars are refused") {
        REQUIRE(ping("81a55365714e6f05ffff", p));
        CHECK(p.seqNo == 5);
        CHECK_FALSE(ping("81a55365714e", p));
        CHECK_FALSE(ping("c0", p));
        CHECK_FALSE(ping("05", p));
        CHECK_FALSE(ping("", p));
        CHECK_FALSE(ping("8101a3616263", p));  // an int key
    }
    SUBCASE("addresses are 4 or 16 bytes (source ones may be absent)") {
        CHECK(ping("81aa536f7572636541646472a0", p));
        CHECK(ping("81aa536f7572636541646472b000000000000000000000000000000001", p));
        CHECK_FALSE(ping("81aa536f7572636541646472a37f0000", p));
        IndirectPing ip;
        Bytes noTarget = hex("81a55365714e6f01");
        CHECK_FALSE(decode(noTarget.data(), noTarget.size(), ip));
    }
    SUBCASE("alive: Vsn must have 6 bytes (str, bin or an array), Addr 4 or 16") {
        Alive a{3, "n", {10, 0, 0, 1}, 7946, {}, kVsn};
        Bytes good = encode(a);
        Alive back;
        REQUIRE(decode(good.data() + 1, good.size() - 1, back));
        CHECK(back.vsn == kVsn);
        CHECK(back.meta.empty());
        CHECK(encode(back) == good);
        auto with = [&](const std::string& vsn) {
            Bytes b = hex("84a441646472a40a000001a4506f7274cd1f0aa44e6f6465a16ea356736e" + vsn);
            Alive x;
            return decode(b.data(), b.size(), x) ? x.vsn.size() : size_t{0};
        };
        CHECK(with("a6010502020505") == 6);
        CHECK(with("c406010502020505") == 6);
        CHECK(with("96010502020505") == 6);
        CHECK(with("a50105020205") == 0);
        CHECK(with("a701050202050505") == 0);
        CHECK(with("960105020205cd0100") == 0);  // 256 is not a uint8
        CHECK(with("c0") == 0);
        Bytes v6 = encode(Alive{1, "n", Bytes(16, 1), 1, {}, kVsn});
        CHECK(decode(v6.data() + 1, v6.size() - 1, back));
        Bytes v5 = encode(Alive{1, "n", Bytes(5, 1), 1, {}, kVsn});
        CHECK_FALSE(decode(v5.data() + 1, v5.size() - 1, back));
    }
    SUBCASE("bools: true/false and the fixints 0 and 1") {
        IndirectPing ip;
        Bytes b = hex("82a44e61636b01a6546172676574a47f00000b");
        REQUIRE(decode(b.data(), b.size(), ip));
        CHECK(ip.nack);
        Bytes bad = hex("82a44e61636b02a6546172676574a47f00000b");
        CHECK_FALSE(decode(bad.data(), bad.size(), ip));
    }
    SUBCASE("a failed decode leaves the output alone") {
        p = Ping{42, "keep", {}, 0, ""};
        CHECK_FALSE(ping("81a55365714e6fff", p));
        CHECK(p.seqNo == 42);
        CHECK(p.node == "keep");
    }
}

// ------------------------------------------------------------------------------ captures

TEST_CASE("real captured datagrams decode, and Go's are re-encoded byte for byte") {
    const auto& all = vectors();
    REQUIRE(all.size() > 200);
    size_t udp = 0, encrypted = 0, reencoded = 0;
    for (const Vector& v : all) {
        if (v.proto != "udp") {
            continue;
        }
        ++udp;
        INFO(v.expect);
        const bool go = v.origin == "go";
        Bytes plain;
        std::string got;
        int key = v.data.size() >= 29 ? udpKey(v.data, plain) : 0;
        if (key != 0) {
            ++encrypted;
            got = "enc" + std::to_string(key) + "v" + std::to_string(v.data[0]) + "(" +
                  describe(plain.data(), plain.size(), go) + ")";
            // Both keys installed: the keyring tries them all.
            Bytes again;
            CHECK(ring({kKey2, kKey1}).decryptUdp(v.data.data(), v.data.size(), again));
            CHECK(again == plain);
        } else {
            got = describe(v.data.data(), v.data.size(), go);
        }
        reencoded += go ? 1 : 0;
        CHECK(got == v.expect);
    }
    CHECK(udp > 150);
    CHECK(encrypted > 60);
    CHECK(reencoded > 100);
}

TEST_CASE("real captured streams: NeedMore at every prefix, then the message") {
    const Keyring keys = ring({kKey1, kKey2});
    size_t streams = 0, encrypted = 0;
    for (const Vector& v : vectors()) {
        if (v.proto != "tcp") {
            continue;
        }
        ++streams;
        INFO(v.expect);
        const bool enc = v.data[0] == static_cast<uint8_t>(MsgType::Encrypt);
        const Keyring* k = enc ? &keys : nullptr;
        StreamMsg m;
        std::string err;
        for (size_t len = 0; len < v.data.size(); ++len) {
            Parse r = parseStream(v.data.data(), len, k, 1 << 20, m, err);
            if (r != Parse::NeedMore) {
                FAIL("prefix " << len << " of " << v.data.size() << ": " << err);
            }
        }
        REQUIRE(parseStream(v.data.data(), v.data.size(), k, 1 << 20, m, err) == Parse::Ok);
        CHECK(m.encrypted == enc);
        std::string got = describe(m);
        if (enc) {
            ++encrypted;
            int which = 0;
            StreamMsg one;
            for (int i = 1; i <= 2 && which == 0; ++i) {
                const Keyring single = ring({i == 1 ? kKey1 : kKey2});
                if (parseStream(v.data.data(), v.data.size(), &single, 1 << 20, one, err) ==
                    Parse::Ok) {
                    which = i;
                }
            }
            got = "enc" + std::to_string(which) + "v" + std::to_string(v.data[5]) + "(" + got + ")";
        }
        CHECK(got == v.expect);

        // The plaintext (after decryption) and the message (after decompression).
        Bytes plain = v.data;
        if (enc) {
            REQUIRE(keys.decryptTcp(v.data.data(), v.data.data() + 5, v.data.size() - 5, plain));
        }
        Bytes msg = plain;
        if (m.compressed) {
            REQUIRE(decompressMsg(plain.data() + 1, plain.size() - 1, msg, 1 << 20));
        }
        if (v.origin == "go") {
            if (m.compressed) {
                CHECK(compressMsg(msg) == plain);  // Go's LZW, byte for byte
            }
            switch (m.type) {
                case MsgType::PushPull:
                    CHECK(toHex(encode(m.pushPull)) == toHex(msg));
                    break;
                case MsgType::Ping:
                    CHECK(toHex(encode(m.ping)) == toHex(msg));
                    break;
                case MsgType::Ack:
                    CHECK(toHex(encode(m.ack)) == toHex(msg));
                    break;
                case MsgType::Err:
                    CHECK(toHex(encode(m.err)) == toHex(msg));
                    break;
                case MsgType::User:
                    CHECK(toHex(encodeUserStream(m.user)) == toHex(msg));
                    break;
                default:
                    FAIL("unexpected type");
            }
        }
        // The same stream against the wrong configuration.
        if (enc) {
            CHECK(parseStream(v.data.data(), v.data.size(), nullptr, 1 << 20, m, err) ==
                  Parse::Bad);
            CHECK(err == "Remote state is encrypted and encryption is not configured");
            Keyring other;
            REQUIRE(other.add(Bytes(32, 7)));
            CHECK(parseStream(v.data.data(), v.data.size(), &other, 1 << 20, m, err) == Parse::Bad);
        } else {
            CHECK(parseStream(v.data.data(), v.data.size(), &keys, 1 << 20, m, err) == Parse::Bad);
            CHECK(err == "Encryption is configured but remote state is not encrypted");
            Keyring none;
            CHECK(parseStream(v.data.data(), v.data.size(), &none, 1 << 20, m, err) == Parse::Ok);
        }
        // A limit below the message's size refuses it.
        CHECK(parseStream(v.data.data(), v.data.size(), k, v.data.size() / 2, m, err) ==
              Parse::Bad);
    }
    CHECK(streams > 40);
    CHECK(encrypted > 15);
}

TEST_CASE("stream messages built here parse back") {
    StreamMsg m;
    std::string err;
    SUBCASE("the SPEC's stream user message") {
        Bytes b =
            hex("0881aa557365724d73674c656e2a0384a24343c2a54c54696d6532a44e616d65a874637065"
                "76656e74a75061796c6f6164a6766961544350");
        for (size_t len = 0; len < b.size(); ++len) {
            CHECK(parseStream(b.data(), len, nullptr, 4096, m, err) == Parse::NeedMore);
        }
        REQUIRE(parseStream(b.data(), b.size(), nullptr, 4096, m, err) == Parse::Ok);
        CHECK(m.type == MsgType::User);
        CHECK(m.user.size() == 42);
        CHECK(serfDesc(m.user.data(), m.user.size()) == "userEvent@50");
    }
    SUBCASE("compressed and encrypted, with a user state") {
        PushPull pp;
        pp.join = false;
        for (int i = 0; i < 40; ++i) {
            pp.nodes.push_back({"node" + std::to_string(i),
                                {10, 0, 0, static_cast<uint8_t>(i)},
                                7946,
                                encodeTags({{"role", "db"}, {"i", std::to_string(i)}}),
                                static_cast<uint32_t>(i),
                                static_cast<State>(i % 4),
                                kVsn});
        }
        pp.userState =
            hex("0286a54c54696d6501ac5374617475734c54696d657381a566616b653201ab4c6566744d"
                "656d6265727390aa4576656e744c54696d6501a64576656e747390aa51756572794c5469"
                "6d6501");
        const Bytes plain = encode(pp);
        const Keyring keys = ring({kKey1});
        const Bytes packed = compressMsg(plain);
        const Bytes wire = keys.encryptTcp(packed.data(), packed.size());
        for (size_t len = 0; len < wire.size(); ++len) {
            REQUIRE(parseStream(wire.data(), len, &keys, 1 << 20, m, err) == Parse::NeedMore);
        }
        REQUIRE(parseStream(wire.data(), wire.size(), &keys, 1 << 20, m, err) == Parse::Ok);
        CHECK(m.encrypted);
        CHECK(m.compressed);
        CHECK(m.type == MsgType::PushPull);
        REQUIRE(m.pushPull.nodes.size() == 40);
        CHECK(m.pushPull.nodes[39].name == "node39");
        CHECK(m.pushPull.nodes[39].state == State::Left);
        CHECK(m.pushPull.userState == pp.userState);
        CHECK(encode(m.pushPull) == plain);
        // Plain and uncompressed: every prefix too.
        for (size_t len = 0; len < plain.size(); ++len) {
            REQUIRE(parseStream(plain.data(), len, nullptr, 1 << 20, m, err) == Parse::NeedMore);
        }
        REQUIRE(parseStream(plain.data(), plain.size(), nullptr, 1 << 20, m, err) == Parse::Ok);
        CHECK_FALSE(m.compressed);
        CHECK(m.pushPull.nodes.size() == 40);
    }
    SUBCASE("a stream ping and its ack, compressed as Go sends them") {
        Bytes ping = compressMsg(encode(Ping{1634, "node0", {}, 0, ""}));
        REQUIRE(parseStream(ping.data(), ping.size(), nullptr, 4096, m, err) == Parse::Ok);
        CHECK(m.type == MsgType::Ping);
        CHECK(m.ping.seqNo == 1634);
        Bytes ack =
            hex("0982a4416c676f00a3427566b90005083a05254c1e366fc29001566a4a99384ede3433202620");
        REQUIRE(parseStream(ack.data(), ack.size(), nullptr, 4096, m, err) == Parse::Ok);
        CHECK(m.type == MsgType::Ack);
        CHECK(m.ack.seqNo == 1634);
        CHECK(m.compressed);
    }
}

TEST_CASE("parseStream refuses what is not a stream message") {
    StreamMsg m;
    m.type = MsgType::Ping;
    m.ping.seqNo = 77;
    std::string err;
    auto parse = [&](const Bytes& b, size_t max = 4096, const Keyring* k = nullptr) {
        return parseStream(b.data(), b.size(), k, max, m, err);
    };
    CHECK(parse(hex("ff")) == Parse::Bad);
    CHECK(err == "invalid msgType (255)");
    CHECK(parse(encode(Alive{1, "a", {1, 2, 3, 4}, 1, {}, kVsn})) == Parse::Bad);
    CHECK(parse(hex("07020001000100")) == Parse::Bad);  // compound is UDP only
    CHECK(parse(hex("00c1")) == Parse::Bad);            // not msgpack
    CHECK(parse(hex("0005")) == Parse::Bad);            // a ping that is no map
    CHECK(parse(hex("0683a44a6f696ec3a54e6f646573cd1001ac5573657253746174654c656e00")) ==
          Parse::Bad);  // 4097 nodes
    CHECK(parse(hex("0683a44a6f696ec3a54e6f64657301ac5573657253746174654c656e0081a4416464"
                    "72a3010203")) == Parse::Bad);  // a node with a 3-byte address
    CHECK(parse(hex("0881aa557365724d73674c656ece00100000")) == Parse::Bad);  // > maxBytes
    CHECK(parse(hex("0881aa557365724d73674c656e05"), 10) == Parse::Bad);      // needs 19 > 10
    CHECK(parse(hex("0a00100000")) == Parse::Bad);                            // encrypted, no keys
    const Keyring keys = ring({kKey1});
    CHECK(parse(hex("0a00100000"), 4096, &keys) == Parse::Bad);  // longer than the limit
    CHECK(parse(hex("0a0000001d"), 4096, &keys) == Parse::NeedMore);
    CHECK(parse(hex("0a00000001ff"), 4096, &keys) == Parse::Bad);  // too short to decrypt
    // A compressed message whose content is cut short can never complete.
    Bytes cut = compressMsg(hex("0683a44a6f696ec3a54e6f64657302ac5573657253746174654c656e00"));
    CHECK(parse(cut) == Parse::Bad);
    CHECK(err == "truncated message");
    Bytes notLzw = hex("0982a4416c676f00a3427566a3000000");
    CHECK(parse(notLzw) == Parse::Bad);
    Bytes algo1 = hex("0982a4416c676f01a3427566a0");
    CHECK(parse(algo1) == Parse::Bad);
    // Nothing was written to the output by the failures.
    CHECK(m.type == MsgType::Ping);
    CHECK(m.ping.seqNo == 77);
    CHECK(parse(Bytes{}) == Parse::NeedMore);
    CHECK(parse(Bytes{}, 0) == Parse::Bad);
}

// ------------------------------------------------------------------------------ LZW

TEST_CASE("LZW is Go's compress/lzw (LSB, 8-bit literals)") {
    SUBCASE("the SPEC's compressed ack, both ways") {
        Bytes wire =
            hex("0982a4416c676f00a3427566b90005083a05254c1e366fc29001566a4a99384ede3433202620");
        Bytes msg;
        REQUIRE(decompressMsg(wire.data() + 1, wire.size() - 1, msg, 1 << 20));
        CHECK(toHex(msg) == "0282a75061796c6f6164c0a55365714e6fcd0662");
        CHECK(compressMsg(msg) == wire);
    }
    SUBCASE("every captured compressed payload: decompress then recompress gives it back") {
        size_t checked = 0;
        std::function<void(const uint8_t*, size_t)> walk = [&](const uint8_t* p, size_t n) {
            if (n == 0) return;
            if (p[0] == 12 && n > 5) {
                walk(p + 5, n - 5);
            } else if (p[0] == 7) {
                std::vector<std::pair<const uint8_t*, size_t>> parts;
                size_t t = 0;
                if (splitCompound(p + 1, n - 1, parts, t)) {
                    for (auto& [q, len] : parts) walk(q, len);
                }
            } else if (p[0] == 9) {
                Bytes inner;
                REQUIRE(decompressMsg(p + 1, n - 1, inner, 1 << 20));
                CHECK(compressMsg(inner) == slice(p, n));
                ++checked;
            }
        };
        const Keyring keys = ring({kKey1, kKey2});
        for (const Vector& v : vectors()) {
            Bytes plain;
            if (v.proto == "udp") {
                walk(v.data.data(), v.data.size());
                if (keys.decryptUdp(v.data.data(), v.data.size(), plain)) {
                    walk(plain.data(), plain.size());
                }
            } else if (v.data[0] == 10) {
                REQUIRE(
                    keys.decryptTcp(v.data.data(), v.data.data() + 5, v.data.size() - 5, plain));
                if (plain[0] == 9) {
                    Bytes inner;
                    REQUIRE(decompressMsg(plain.data() + 1, plain.size() - 1, inner, 1 << 20));
                    CHECK(compressMsg(inner) == plain);
                    ++checked;
                }
            } else if (v.data[0] == 9) {
                Bytes inner;
                REQUIRE(decompressMsg(v.data.data() + 1, v.data.size() - 1, inner, 1 << 20));
                CHECK(compressMsg(inner).size() == v.data.size());  // a stream: nothing after
                CHECK(compressMsg(inner) == v.data);
                ++checked;
            }
        }
        CHECK(checked > 60);
    }
    SUBCASE("table resets at 4095 codes: byte-exact with the Python codec (itself Go-exact)") {
        struct Case {
            Bytes data;
            size_t len;
            uint32_t crc;
            const char* tail;
        };
        Bytes letters = text("abcdefgh");
        Bytes all(256);
        for (int i = 0; i < 256; ++i) all[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
        const Case cases[] = {
            {lcgBytes(60000, letters), 27174, 0x67441037, "6cb3c24c9a756440"},
            {lcgBytes(30000, all), 41080, 0x0b34c8e2, "8080118280df0202"},
            {Bytes(100000, 0), 530, 0x2f32f651, "aebcf6eaeb8f0101"},
        };
        for (const Case& c : cases) {
            Bytes z = lzwCompress(c.data.data(), c.data.size());
            CHECK(z.size() == c.len);
            CHECK(Bytes(z.end() - 8, z.end()) == hex(c.tail));
            // crc32 through withCrc's header, big-endian
            Bytes crc = withCrc(z);
            CHECK((uint32_t{crc[1]} << 24 | uint32_t{crc[2]} << 16 | uint32_t{crc[3]} << 8 |
                   crc[4]) == c.crc);
            Bytes back;
            REQUIRE(lzwDecompress(z.data(), z.size(), back, c.data.size()));
            CHECK(back == c.data);
            CHECK_FALSE(lzwDecompress(z.data(), z.size(), back, c.data.size() - 1));
        }
    }
    SUBCASE("round trips of random and patterned inputs") {
        std::mt19937 rng(7);
        for (size_t n : {0, 1, 2, 3, 255, 256, 1000, 4096, 9000, 70000}) {
            for (int kind = 0; kind < 3; ++kind) {
                Bytes d(n);
                for (size_t i = 0; i < n; ++i) {
                    d[i] = kind == 0   ? static_cast<uint8_t>(rng())
                           : kind == 1 ? static_cast<uint8_t>(rng() % 3)
                                       : static_cast<uint8_t>(i / 7);
                }
                Bytes z = lzwCompress(d.data(), d.size());
                Bytes back;
                REQUIRE(lzwDecompress(z.data(), z.size(), back, n));
                CHECK(back == d);
            }
        }
        Bytes empty = lzwCompress(nullptr, 0);
        CHECK(toHex(empty) == "000302");  // CLEAR, EOF
    }
    SUBCASE("corrupt streams are refused") {
        Bytes out;
        CHECK_FALSE(lzwDecompress(nullptr, 0, out, 100));             // no EOF
        CHECK_FALSE(lzwDecompress(hex("0005").data(), 2, out, 100));  // CLEAR, no EOF
        // CLEAR then code 300 (> hi): 9-bit codes 256, 300 LSB first.
        CHECK_FALSE(lzwDecompress(hex("0059020000").data(), 5, out, 100));
        Bytes ok = lzwCompress(text("hello hello hello").data(), 17);
        CHECK(lzwDecompress(ok.data(), ok.size(), out, 17));
        CHECK_FALSE(lzwDecompress(ok.data(), ok.size() - 1, out, 17));  // EOF cut
        CHECK_FALSE(lzwDecompress(ok.data(), ok.size(), out, 16));      // over the limit
        Bytes m;
        Bytes emptyMsg = compressMsg(Bytes{});
        CHECK_FALSE(decompressMsg(emptyMsg.data() + 1, emptyMsg.size() - 1, m, 100));
    }
}

// ------------------------------------------------------------------------------ encryption

TEST_CASE("AES-GCM keyring") {
    SUBCASE("the SPEC's encrypted ping (key1)") {
        Bytes wire = hex(
            "0119c55ccfcb4f88822d21c53e087ef2140d9ae474a647e10514777627369bd57093cd72ed468a077194"
            "3323bd66a28715578ac4a4b9bc3cb709530d83a18ffbfa52faf020a44b499f7017ded8f55f091e5a8c15"
            "a33c1f8c6f75ecfdb3b9b6d3");
        Bytes plain;
        REQUIRE(ring({kKey1}).decryptUdp(wire.data(), wire.size(), plain));
        CHECK(toHex(plain) ==
              "0085a44e6f6465a56e6f646531a55365714e6f01aa536f7572636541646472a47f00000aaa536f7572"
              "63654e6f6465a56e6f646530aa536f75726365506f7274cd1f0a");
        CHECK_FALSE(ring({kKey2}).decryptUdp(wire.data(), wire.size(), plain));
        CHECK(ring({kKey2, kKey1}).decryptUdp(wire.data(), wire.size(), plain));
        for (size_t i = 0; i < wire.size(); ++i) {  // any flipped bit fails
            Bytes bad = wire;
            bad[i] ^= 0x10;
            CHECK_FALSE(ring({kKey1}).decryptUdp(bad.data(), bad.size(), plain));
        }
    }
    SUBCASE("version 0 (PKCS7-padded), made by Python's cryptography package") {
        Bytes udp = hex(
            "00000102030405060708090a0bf53724ea45f4e382964c86bc1ce6f0665ac6a18ddc30c3694293bf09a7"
            "5b73ecbac9a46857d80f2ab3b262cfa909e73ba4bbd849a803d3aaf473f35bb002dbf0fe3c010a88157d"
            "9d983fed68e2cde4ef99c873cc9a583951d6e783cb0f84223e");
        Bytes plain;
        REQUIRE(ring({kKey1}).decryptUdp(udp.data(), udp.size(), plain));
        CHECK(plain.size() == 67);
        Ping p;
        REQUIRE(decode(plain.data() + 1, plain.size() - 1, p));
        CHECK(p.node == "node1");
        Bytes tcp = hex(
            "0a0000003d000c0d0e0f10111213141516171eec7d5a8cbe1bf3de57b676af9ef80ed45e3465147eaff7"
            "484d9ad8c46dc38c73d556693827c8850873fb3b5a200f39");
        const Keyring k1 = ring({kKey1});
        REQUIRE(k1.decryptTcp(tcp.data(), tcp.data() + 5, tcp.size() - 5, plain));
        CHECK(toHex(plain) == "0082a44e6f6465a56e6f646530a55365714e6fcd04de");
        StreamMsg m;
        std::string err;
        REQUIRE(parseStream(tcp.data(), tcp.size(), &k1, 4096, m, err) == Parse::Ok);
        CHECK(m.ping.seqNo == 1246);
        CHECK(m.encrypted);
    }
    SUBCASE("round trips with 16, 24 and 32-byte keys; other keys fail") {
        for (size_t len : {16, 24, 32}) {
            Bytes key(len);
            for (size_t i = 0; i < len; ++i) key[i] = static_cast<uint8_t>(i * 7 + len);
            Keyring k;
            REQUIRE(k.add(key));
            Keyring wrong;
            Bytes other = key;
            other[0] ^= 1;
            REQUIRE(wrong.add(other));
            for (size_t n : {0, 1, 15, 16, 17, 1400, 70000}) {
                Bytes msg = lcgBytes(n, text("xyz"));
                Bytes u = k.encryptUdp(msg.data(), msg.size());
                REQUIRE(u.size() == n + 29);
                CHECK(u[0] == 1);
                Bytes back;
                REQUIRE(k.decryptUdp(u.data(), u.size(), back));
                CHECK(back == msg);
                CHECK_FALSE(wrong.decryptUdp(u.data(), u.size(), back));
                Bytes t = k.encryptTcp(msg.data(), msg.size());
                REQUIRE(t.size() == n + 34);
                CHECK(t[0] == 10);
                REQUIRE(k.decryptTcp(t.data(), t.data() + 5, t.size() - 5, back));
                CHECK(back == msg);
                CHECK_FALSE(wrong.decryptTcp(t.data(), t.data() + 5, t.size() - 5, back));
                // The header is authenticated: a UDP reading of the body fails.
                CHECK_FALSE(k.decryptUdp(t.data() + 5, t.size() - 5, back));
                Bytes t2 = k.encryptTcp(msg.data(), msg.size());
                CHECK(t2 != t);  // a fresh nonce every time
            }
        }
    }
    SUBCASE("keys and malformed ciphertexts") {
        Keyring k;
        CHECK(k.empty());
        CHECK(k.encryptUdp(nullptr, 0).empty());
        CHECK(k.encryptTcp(nullptr, 0).empty());
        CHECK_FALSE(k.add(Bytes(15, 1)));
        CHECK_FALSE(k.add(Bytes(33, 1)));
        CHECK_FALSE(k.add(Bytes{}));
        CHECK_FALSE(k.addBase64("not base64!"));
        CHECK_FALSE(k.addBase64("AAAA"));                                         // 3 bytes
        CHECK_FALSE(k.addBase64("uFu37q5BAkLbvwi9nOmdNBdSRHRAaMlVd58vOPVXT7g"));  // no padding
        CHECK_FALSE(k.addBase64("uFu37q5BAkLbvwi9nOmdNBdSRHRAaMlVd58vOPVX=7g="));
        CHECK_FALSE(k.addBase64(""));
        CHECK_FALSE(k.addBase64("AAECAwQFBgc=CQoLDA0ODw=="));  // padding inside
        CHECK_FALSE(k.addBase64("AAECAwQFBgcICQoLDA0OD==="));  // three pads
        CHECK_FALSE(k.addBase64("AAECAwQF BgcICQoLDA0ODw="));  // a space
        CHECK(k.empty());
        CHECK(k.addBase64("AAECAwQFBgcICQoLDA0ODw=="));      // 16 bytes
        CHECK(k.addBase64("AAECAwQFBgcI\r\nCQoLDA0ODw=="));  // the same, CR LF skipped (as Go)
        CHECK(k.addBase64(kKey1));
        CHECK(k.addBase64(kKey1));  // already there
        CHECK(k.size() == 2);
        Bytes out;
        CHECK_FALSE(k.decryptUdp(nullptr, 0, out));
        CHECK_FALSE(k.decryptUdp(Bytes(28, 1).data(), 28, out));
        Bytes v2 = k.encryptUdp(text("hi").data(), 2);
        v2[0] = 2;
        CHECK_FALSE(k.decryptUdp(v2.data(), v2.size(), out));
        Bytes v0short(44, 0);  // version 0 needs 45 bytes
        CHECK_FALSE(k.decryptUdp(v0short.data(), v0short.size(), out));
        Bytes t = k.encryptTcp(text("hi").data(), 2);
        Bytes hdr(t.begin(), t.begin() + 5);
        hdr[4] ^= 1;  // a length that is not the body's
        CHECK_FALSE(k.decryptTcp(hdr.data(), t.data() + 5, t.size() - 5, out));
        CHECK(k.decryptTcp(t.data(), t.data() + 5, t.size() - 5, out));
        CHECK(out == text("hi"));
    }
}

// ------------------------------------------------------------------------------ compound, CRC

TEST_CASE("compound and CRC") {
    Bytes a = encode(Ping{1, "node2", {127, 0, 0, 10}, 7946, "node0"});
    Bytes b = encodeUser(serfJoinIntent(1, "node1"));
    Bytes c = compound({a, b});
    CHECK(toHex(Bytes(c.begin(), c.begin() + 6)) ==
          "070200" + toHex(Bytes{uint8_t(a.size())}) + "00" + toHex(Bytes{uint8_t(b.size())}));
    std::vector<std::pair<const uint8_t*, size_t>> parts;
    size_t truncated = 9;
    REQUIRE(splitCompound(c.data() + 1, c.size() - 1, parts, truncated));
    CHECK(truncated == 0);
    REQUIRE(parts.size() == 2);
    CHECK(slice(parts[0].first, parts[0].second) == a);
    CHECK(slice(parts[1].first, parts[1].second) == b);
    SUBCASE("a short buffer drops the cut parts and counts them") {
        REQUIRE(splitCompound(c.data() + 1, c.size() - 2, parts, truncated));
        CHECK(parts.size() == 1);
        CHECK(truncated == 1);
        REQUIRE(splitCompound(c.data() + 1, 5 + a.size() - 1, parts, truncated));
        CHECK(parts.empty());
        CHECK(truncated == 2);
        CHECK_FALSE(splitCompound(c.data() + 1, 4, parts, truncated));  // lengths cut
        CHECK_FALSE(splitCompound(nullptr, 0, parts, truncated));
        Bytes none = hex("00");
        CHECK(splitCompound(none.data(), 1, parts, truncated));
        CHECK(parts.empty());
        Bytes zero = hex("020000000101");  // an empty part, then one byte
        REQUIRE(splitCompound(zero.data(), zero.size(), parts, truncated));
        CHECK(parts.size() == 1);
    }
    SUBCASE("compound refuses what Go cannot read") {
        CHECK(compound({a, Bytes{}}).empty());
        CHECK(compound(std::vector<Bytes>(256, a)).empty());
        CHECK(compound({Bytes(65536, 1)}).empty());
        CHECK(compound(std::vector<Bytes>(255, Bytes{8})).size() == 2 + 255 * 3);
    }
    SUBCASE("CRC32 (IEEE, big-endian)") {
        Bytes crc = withCrc(a);
        const uint8_t* in = nullptr;
        size_t len = 0;
        REQUIRE(checkCrc(crc.data() + 1, crc.size() - 1, in, len));
        CHECK(slice(in, len) == a);
        CHECK(toHex(withCrc(text("123456789"))) == "0ccbf43926313233343536373839");
        for (size_t i = 1; i < crc.size(); ++i) {
            Bytes bad = crc;
            bad[i] ^= 0x01;
            CHECK_FALSE(checkCrc(bad.data() + 1, bad.size() - 1, in, len));
        }
        CHECK_FALSE(checkCrc(crc.data() + 1, 4, in, len));
        CHECK_FALSE(checkCrc(nullptr, 0, in, len));
    }
}

// ------------------------------------------------------------------------------ serf

TEST_CASE("serf tags") {
    std::map<std::string, std::string> tags;
    SUBCASE("encoded with sorted keys, decoded whatever the order") {
        Bytes m = encodeTags({{"role", "x"}, {"idx", "0"}});
        CHECK(toHex(m) == "ff82a3696478a130a4726f6c65a178");
        Bytes goOrder = hex("ff82a4726f6c65a178a3696478a130");  // as an agent sent it
        REQUIRE(decodeTags(goOrder, tags));
        CHECK(tags == std::map<std::string, std::string>{{"role", "x"}, {"idx", "0"}});
        REQUIRE(decodeTags(m, tags));
        CHECK(tags.size() == 2);
        CHECK(encodeTags({}).empty());
    }
    SUBCASE("round trip of many and long tags") {
        std::map<std::string, std::string> many;
        for (int i = 0; i < 20; ++i) {
            many["tag" + std::to_string(i)] = std::string(static_cast<size_t>(i * 5), 'v');
        }
        Bytes m = encodeTags(many);
        CHECK(m[1] == 0xde);  // map16
        REQUIRE(decodeTags(m, tags));
        CHECK(tags == many);
    }
    SUBCASE("legacy meta: anything not starting with 0xFF is the role") {
        REQUIRE(decodeTags(text("web"), tags));
        CHECK(tags == std::map<std::string, std::string>{{"role", "web"}});
        REQUIRE(decodeTags(Bytes{}, tags));
        CHECK(tags == std::map<std::string, std::string>{{"role", ""}});
    }
    SUBCASE("malformed tags") {
        tags = {{"keep", "me"}};
        CHECK_FALSE(decodeTags(hex("ff"), tags));
        CHECK_FALSE(decodeTags(hex("ff82a4726f6c65"), tags));        // cut
        CHECK_FALSE(decodeTags(hex("ff81a4726f6c65c40178"), tags));  // bin value
        CHECK_FALSE(decodeTags(hex("ff8101a178"), tags));            // int key
        CHECK_FALSE(decodeTags(hex("ff93a178a178a178"), tags));      // an array
        CHECK(tags == std::map<std::string, std::string>{{"keep", "me"}});
        REQUIRE(decodeTags(hex("ff81a4726f6c65c0"), tags));  // nil value: ""
        CHECK(tags["role"].empty());
    }
}

TEST_CASE("serf intents and Lamport times") {
    // As captured: 08 01 {LTime 1, Node node2} and 08 00 {LTime 2, Node node2, Prune false}.
    CHECK(toHex(encodeUser(serfJoinIntent(1, "node2"))) ==
          "080182a54c54696d6501a44e6f6465a56e6f646532");
    CHECK(toHex(encodeUser(serfLeaveIntent(2, "node2"))) ==
          "080083a54c54696d6502a44e6f6465a56e6f646532a55072756e65c2");
    auto lt = [](const std::string& h) -> int64_t {
        Bytes b = hex(h);
        uint64_t v = 0;
        return serfLTime(b.data(), b.size(), v) ? static_cast<int64_t>(v) : -1;
    };
    CHECK(lt("0182a54c54696d6501a44e6f6465a56e6f646532") == 1);
    CHECK(lt("0083a54c54696d6502a44e6f6465a56e6f646532a55072756e65c2") == 2);
    CHECK(lt("0384a24343c3a54c54696d6501a44e616d65a76d796576656e74a75061796c6f6164a568656c6c6f") ==
          1);
    CHECK(lt("048ba441646472a47f00000aa746696c74657273c0a5466c61677301a24944ce610d07dfa54c5469"
             "6d6507a44e616d65a76d797175657279a75061796c6f6164a8717061796c6f6164a4506f7274cd1f0aab"
             "52656c6179466163746f7200aa536f757263654e6f6465a56e6f646530a754696d656f7574ce7735940"
             "0") == 7);
    CHECK(lt("0585a5466c61677301a446726f6da56e6f646530a24944ce610d07dfa54c54696d6503a75061796c6f"
             "6164c0") == 3);
    CHECK(lt("0286a54c54696d6509ac5374617475734c54696d657381a566616b653201ab4c6566744d656d626572"
             "7390aa4576656e744c54696d6501a64576656e747390aa51756572794c54696d6501") == 9);
    CHECK(lt("0192cd0100a16e") == 256);     // positional
    CHECK(lt("0181a44e6f6465a16e") == -1);  // no LTime
    CHECK(lt("0781a34b6579a0") == -1);      // key request: no Lamport time
    CHECK(lt("0981a54c54696d6501") == -1);  // relay
    CHECK(lt("0181a54c54696d65ff") == -1);  // negative
    CHECK(lt("0181a54c54696d65") == -1);    // cut
    CHECK(lt("01") == -1);
    CHECK(lt("") == -1);
    // On the captured traffic: every user message and push-pull state with an LTime.
    size_t seen = 0;
    for (const Vector& v : vectors()) {
        seen +=
            v.expect.find('@') != std::string::npos && v.expect.find("user:") != std::string::npos;
    }
    CHECK(seen > 50);  // checked through describe() in the capture tests
}

// ------------------------------------------------------------------------------ garbage

TEST_CASE("garbage never crashes a decoder (200k inputs, fixed seed)") {
    std::mt19937 rng(20240531);
    const Keyring keys = ring({kKey1});
    const auto& real = vectors();
    size_t accepted = 0;
    size_t outside = 0;  // views returned outside the input
    for (int iter = 0; iter < 200000; ++iter) {
        Bytes d;
        if (iter % 2 == 0) {
            d.resize(rng() % 300);
            for (auto& c : d) c = static_cast<uint8_t>(rng());
        } else {  // a real packet, mutated
            d = real[rng() % real.size()].data;
            const int flips = 1 + static_cast<int>(rng() % 4);
            for (int f = 0; f < flips && !d.empty(); ++f) {
                // One draw per statement: the same inputs whatever the compiler.
                const uint32_t op = rng() % 4;
                const size_t at = rng() % d.size();
                const uint32_t value = rng();
                switch (op) {
                    case 0:
                        d[at] ^= static_cast<uint8_t>(1u << (value % 8));
                        break;
                    case 1:
                        d[at] = static_cast<uint8_t>(value);
                        break;
                    case 2:
                        d.resize(at);
                        break;
                    default:
                        d.insert(d.begin() + static_cast<std::ptrdiff_t>(at),
                                 static_cast<uint8_t>(value));
                }
            }
        }
        const uint8_t* p = d.data();
        const size_t n = d.size();
        const uint8_t* b = n ? p + 1 : p;
        const size_t bn = n ? n - 1 : 0;
        Ping ping;
        IndirectPing ip;
        Ack ack;
        Nack nack;
        Alive alive;
        Suspect sus;
        Dead dead;
        ErrResp er;
        accepted += decode(b, bn, ping) + decode(b, bn, ip) + decode(b, bn, ack) +
                    decode(b, bn, nack) + decode(b, bn, alive) + decode(b, bn, sus) +
                    decode(b, bn, dead) + decode(b, bn, er);
        std::vector<std::pair<const uint8_t*, size_t>> parts;
        size_t t = 0;
        if (splitCompound(b, bn, parts, t)) {
            for (auto& [q, len] : parts) {
                outside += q < b || q + len > b + bn;
            }
        }
        const uint8_t* in = nullptr;
        size_t len = 0;
        if (checkCrc(b, bn, in, len)) {
            outside += in != b + 4 || len != bn - 4;
        }
        Bytes out;
        decompressMsg(b, bn, out, 1 << 16);
        lzwDecompress(p, n, out, 1 << 16);
        keys.decryptUdp(p, n, out);
        if (n >= 5) keys.decryptTcp(p, p + 5, n - 5, out);
        StreamMsg m;
        std::string err;
        parseStream(p, n, nullptr, 1 << 16, m, err);
        parseStream(p, n, &keys, 1 << 16, m, err);
        std::map<std::string, std::string> tags;
        decodeTags(d, tags);
        uint64_t lt = 0;
        serfLTime(p, n, lt);
    }
    CHECK(outside == 0);
    CHECK(accepted > 0);  // the mutated real packets do get through sometimes
}
