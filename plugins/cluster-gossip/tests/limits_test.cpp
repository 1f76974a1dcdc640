// SPDX-License-Identifier: Apache-2.0
// What a peer may make a member hold or do (the hardening issue's gossip findings): field
// bounds, the member cap, unusable addresses, the awareness score, TCP served concurrently
// with a deadline, joins of nobody, and a leave bounded in every profile. Real members on
// 127.0.0.1 (Membership with its sockets and threads), driven by hand-built datagrams.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "membership.hpp"
#include "wire.hpp"

using namespace mp::gossip;

namespace {

Bytes ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return Bytes{a, b, c, d}; }

Alive alive(const std::string& name, Bytes addr, uint16_t port, Bytes meta = {}) {
    return Alive{1, name, std::move(addr), port, std::move(meta), kVsn};
}

/// A UDP socket on 127.0.0.1 that sends memberlist messages to a member.
struct Sender {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    ~Sender() { ::close(fd); }
    void send(uint16_t port, const Bytes& msg) const {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&sa),
                         sizeof sa) == static_cast<ssize_t>(msg.size()));
    }
};

Options options(const std::string& name) {
    Options o;
    o.name = name;
    o.bindIp = "127.0.0.1";
    return o;
}

template <class F>
bool waitFor(F cond, std::chrono::milliseconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (cond()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return cond();
}

/// A free UDP port on 127.0.0.1 that nobody listens on (a fake member's address).
uint16_t deadPort() {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    ::close(fd);
    return ntohs(sa.sin_port);
}

}  // namespace

TEST_CASE("limits: names and meta as memberlist bounds them") {
    CHECK(withinLimits(
        alive(std::string(kNameMaxSize, 'n'), ip4(10, 0, 0, 1), 1, Bytes(kMetaMaxSize, 0xff))));
    CHECK_FALSE(withinLimits(alive("n", ip4(10, 0, 0, 1), 1, Bytes(kMetaMaxSize + 1, 0xff))));
    CHECK_FALSE(withinLimits(alive(std::string(kNameMaxSize + 1, 'n'), ip4(10, 0, 0, 1), 1)));
    CHECK(withinLimits(Suspect{1, "a", "b"}));
    CHECK_FALSE(withinLimits(Suspect{1, "a", std::string(kNameMaxSize + 1, 'f')}));
    CHECK_FALSE(withinLimits(Dead{1, std::string(kNameMaxSize + 1, 'n'), "b"}));
    PushNodeState s;
    s.name = "ok";
    s.meta = Bytes(kMetaMaxSize + 1, 1);
    CHECK_FALSE(withinLimits(s));
    s.meta.resize(kMetaMaxSize);
    CHECK(withinLimits(s));

    // The format itself has no limit: a 1 MiB meta decodes, and withinLimits refuses it.
    Alive big = alive("big", ip4(10, 0, 0, 1), 7946, Bytes(1 << 20, 'x'));
    Bytes wire = encode(big);
    Alive back;
    REQUIRE(decode(wire.data() + 1, wire.size() - 1, back));
    CHECK(back.meta.size() == (1u << 20));
    CHECK_FALSE(withinLimits(back));
}

TEST_CASE("limits: addresses nobody has") {
    CHECK(unusableAddress(ip4(127, 0, 0, 1)).empty());
    CHECK(unusableAddress(ip4(10, 1, 2, 3)).empty());
    CHECK_FALSE(unusableAddress(ip4(0, 0, 0, 0)).empty());
    CHECK_FALSE(unusableAddress(ip4(224, 0, 0, 1)).empty());
    CHECK_FALSE(unusableAddress(ip4(239, 255, 255, 250)).empty());
    CHECK_FALSE(unusableAddress(ip4(255, 255, 255, 255)).empty());
    CHECK_FALSE(unusableAddress(Bytes(16, 0)).empty());  // IPv6: not spoken here
    CHECK(unusableAddress(std::string("192.168.1.1")).empty());
    CHECK(unusableAddress(std::string("0.0.0.0")).find("unspecified") != std::string::npos);
    CHECK(unusableAddress(std::string("255.255.255.255")).find("broadcast") != std::string::npos);
    CHECK(unusableAddress(std::string("224.1.1.1")).find("multicast") != std::string::npos);
    CHECK(unusableAddress(std::string("nonsense")) == "not an IPv4 address");
}

TEST_CASE("member: oversize fields, unusable addresses and the member cap are refused") {
    Options o = options("capped");
    o.maxMembers = 5;  // this one and 4 others
    Membership m(o, [](int, const std::string&) {});
    m.start();
    Sender s;
    s.send(m.port(), encode(alive("meta-too-big", ip4(127, 0, 0, 1), 9, Bytes(513, 'm'))));
    s.send(m.port(), encode(alive(std::string(300, 'n'), ip4(127, 0, 0, 1), 9)));
    s.send(m.port(), encode(alive("anywhere", ip4(0, 0, 0, 0), 9)));
    s.send(m.port(), encode(alive("everyone", ip4(255, 255, 255, 255), 9)));
    s.send(m.port(), encode(alive("v6", Bytes(16, 1), 9)));
    for (int i = 0; i < 20; ++i) {
        s.send(m.port(), encode(alive("fake" + std::to_string(i), ip4(127, 0, 0, 1),
                                      static_cast<uint16_t>(10000 + i), Bytes(512, 'm'))));
    }
    REQUIRE(waitFor([&] { return m.stats().refusedFull == 16; }, std::chrono::seconds(3)));
    Stats st = m.stats();
    CHECK(st.refusedOversize == 2);
    CHECK(st.refusedAddress == 3);
    CHECK(m.members().size() == 5);
    for (const MemberInfo& i : m.members()) {
        CHECK(i.name.size() <= kNameMaxSize);
        CHECK(i.ip == "127.0.0.1");
    }
    m.stop(false);
}

TEST_CASE("member: fake members that never answer do not raise the awareness score") {
    Options o = options("aware");
    o.timing.probeInterval = std::chrono::milliseconds(100);
    o.timing.probeTimeout = std::chrono::milliseconds(30);
    o.timing.tcpTimeout = std::chrono::milliseconds(200);
    Membership m(o, [](int, const std::string&) {});
    m.start();
    Sender s;
    for (int i = 0; i < 10; ++i) {
        s.send(m.port(), encode(alive("ghost" + std::to_string(i), ip4(127, 0, 0, 1), deadPort())));
    }
    // Each probe of a ghost fails; memberlist's rule would add 1 (or the missing nacks) each.
    REQUIRE(waitFor([&] { return m.stats().probeFailures >= 5; }, std::chrono::seconds(5)));
    CHECK(m.stats().awareness == 0);
    // Accusations without keys come from anyone: refuted, without a cost to the score.
    for (uint32_t inc = 10; inc < 15; ++inc) {
        s.send(m.port(), encode(Suspect{inc, "aware", "liar"}));
    }
    REQUIRE(waitFor([&] { return m.stats().refutations >= 1; }, std::chrono::seconds(2)));
    CHECK(m.stats().awareness == 0);
    m.stop(false);
}

TEST_CASE("member: joins of nobody or of itself fail") {
    Membership m(options("lonely"), [](int, const std::string&) {});
    m.start();
    std::string error;
    CHECK_FALSE(m.join("127.0.0.1", m.port(), error));
    CHECK(error.find("own") != std::string::npos);
    CHECK_FALSE(m.join("0.0.0.0", 7946, error));
    CHECK(error.find("unspecified") != std::string::npos);
    CHECK_FALSE(m.join("224.0.0.1", 7946, error));
    CHECK_FALSE(m.join("255.255.255.255", 7946, error));
    CHECK(m.members().size() == 1);
    m.stop(false);
}

TEST_CASE("member: idle TCP connections do not hold up a join") {
    Membership a(options("a"), [](int, const std::string&) {});
    a.start();
    std::vector<int> idle;
    for (int i = 0; i < 20; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(a.port());
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        idle.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Options ob = options("b");
    ob.bindIp = "127.0.0.2";  // another source address than the idle connections'
    Membership b(ob, [](int, const std::string&) {});
    b.start();
    std::string error;
    auto t0 = std::chrono::steady_clock::now();
    CHECK_MESSAGE(b.join("127.0.0.1", a.port(), error), error);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1000));
    CHECK(b.members().size() == 2);
    CHECK(a.stats().tcpRefused >= 12);  // at most 8 at once from one address
    for (int fd : idle) {
        ::close(fd);
    }
    b.stop(false);
    a.stop(false);
}

TEST_CASE("member: a graceful leave is bounded in the WAN profile") {
    auto wan = [](const std::string& name, const std::string& ip) {
        Options o = options(name);
        o.bindIp = ip;
        o.timing.probeInterval = std::chrono::milliseconds(5000);
        o.timing.probeTimeout = std::chrono::milliseconds(3000);
        o.timing.suspicionMult = 6;
        o.timing.gossipInterval = std::chrono::milliseconds(500);
        o.timing.gossipNodes = 4;
        o.timing.tcpTimeout = std::chrono::milliseconds(10000);
        return o;
    };
    Membership a(wan("wa", "127.0.0.1"), [](int, const std::string&) {});
    Membership b(wan("wb", "127.0.0.2"), [](int, const std::string&) {});
    a.start();
    b.start();
    std::string error;
    REQUIRE_MESSAGE(b.join("127.0.0.1", a.port(), error), error);
    auto t0 = std::chrono::steady_clock::now();
    b.stop(true);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took < std::chrono::milliseconds(2000));
    CHECK(waitFor(
        [&] {
            for (const MemberInfo& i : a.members()) {
                if (i.name == "wb") {
                    return i.state == State::Left;
                }
            }
            return false;
        },
        std::chrono::seconds(3)));
    a.stop(false);
}

TEST_CASE("member: indirect pings and acks are not sent to nobody's address") {
    Membership m(options("relay"), [](int, const std::string&) {});
    m.start();
    Sender s;
    IndirectPing toNobody;
    toNobody.seqNo = 7;
    toNobody.target = ip4(0, 0, 0, 0);  // would be this very host
    toNobody.port = 7946;
    toNobody.node = "x";
    s.send(m.port(), encode(toNobody));
    toNobody.target = ip4(224, 0, 0, 251);  // everyone on the segment
    s.send(m.port(), encode(toNobody));
    REQUIRE(waitFor([&] { return m.stats().badPackets == 2; }, std::chrono::seconds(2)));
    CHECK(m.stats().udpOut == 0);
    // A ping whose SourceAddr is nobody's is answered where it came from.
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    sa.sin_port = htons(m.port());
    Bytes ping = encode(Ping{42, "relay", ip4(0, 0, 0, 0), 9, "p"});
    REQUIRE(::sendto(fd, ping.data(), ping.size(), 0, reinterpret_cast<sockaddr*>(&sa),
                     sizeof sa) == static_cast<ssize_t>(ping.size()));
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[1500];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    REQUIRE(n > 1);
    CHECK(buf[0] == static_cast<uint8_t>(MsgType::Ack));
    Ack ack;
    REQUIRE(decode(buf + 1, static_cast<size_t>(n) - 1, ack));
    CHECK(ack.seqNo == 42);
    ::close(fd);
    m.stop(false);
}
