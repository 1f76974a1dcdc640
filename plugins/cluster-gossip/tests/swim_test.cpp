// SPDX-License-Identifier: Apache-2.0
// The SWIM/Lifeguard state of Membership driven by a fake clock: packets in through the same
// entry as the UDP socket's, packets out caught before any socket, the timer thread's rounds run
// by hand. No sockets, no threads, no sleeps: every deadline is checked to the millisecond.
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "membership.hpp"
#include "wire.hpp"

namespace mp::gossip {

/// Owns a Membership that has not started: its clock and its UDP output are the test's.
class SwimDriver {
  public:
    struct Sent {
        std::string ip;
        uint16_t port;
        Bytes packet;
    };

    explicit SwimDriver(Options o) {
        o.clock = [this] { return now_; };
        o.sendUdpHook = [this](const std::string& ip, uint16_t port, const Bytes& p) {
            sent.push_back(Sent{ip, port, p});
        };
        m_ = std::make_unique<Membership>(std::move(o), [](int, const std::string&) {});
        std::lock_guard<std::mutex> lock(m_->mu_);
        m_->port_ = 7946;
        m_->selfAddr_ = addr("127.0.0.1");
        m_->addSelf(now_);
    }

    static Bytes addr(const std::string& ip) {
        Bytes b(4);
        inet_pton(AF_INET, ip.c_str(), b.data());
        return b;
    }

    /// Time passes in the timer thread's steps of 10 ms, each running one round.
    void run(Ms d) {
        for (Ms done{0}; done < d; done += Ms(10)) {
            now_ += Ms(10);
            std::lock_guard<std::mutex> lock(m_->mu_);
            m_->periodic(now_);
        }
    }
    /// A packet from ip:port, as the UDP socket hands it over.
    void receive(const std::string& ip, uint16_t port, const Bytes& packet) {
        std::lock_guard<std::mutex> lock(m_->mu_);
        m_->handlePacket(ip, port, packet.data(), packet.size(), 0);
    }
    /// Another member announcing itself: 127.0.0.N, protocol version 2 (no nacks, no TCP
    /// fallback probe: what is tested is the UDP state machine).
    void alive(const std::string& name, int n, uint32_t incarnation, Bytes meta = {}) {
        std::string ip = "127.0.0." + std::to_string(n);
        receive(ip, 7946,
                encode(Alive{incarnation, name, addr(ip), 7946, meta, {1, 2, 2, 2, 5, 4}}));
    }

    std::optional<MemberInfo> member(const std::string& name) const {
        for (auto& m : m_->members()) {
            if (m.name == name) {
                return m;
            }
        }
        return std::nullopt;
    }
    State state(const std::string& name) const { return member(name)->state; }
    Stats stats() const { return m_->stats(); }
    /// The messages of `type` sent since the last clear(), compounds opened.
    std::vector<Bytes> sentOf(MsgType type) const {
        std::vector<Bytes> out;
        for (const auto& s : sent) {
            collect(s.packet.data(), s.packet.size(), type, out);
        }
        return out;
    }
    Ms probeInterval() const {
        std::lock_guard<std::mutex> lock(m_->mu_);
        return m_->probeIntervalNow();
    }

    std::vector<Sent> sent;

  private:
    static void collect(const uint8_t* p, size_t n, MsgType type, std::vector<Bytes>& out) {
        if (n == 0) {
            return;
        }
        if (static_cast<MsgType>(p[0]) == MsgType::Compound) {
            std::vector<std::pair<const uint8_t*, size_t>> parts;
            size_t truncated = 0;
            if (splitCompound(p + 1, n - 1, parts, truncated)) {
                for (auto& [q, k] : parts) {
                    collect(q, k, type, out);
                }
            }
            return;
        }
        if (static_cast<MsgType>(p[0]) == type) {
            out.emplace_back(p + 1, p + n);
        }
    }

    Clock::time_point now_ = Clock::time_point{} + std::chrono::hours(1);
    std::unique_ptr<Membership> m_;
};

}  // namespace mp::gossip

using mp::gossip::Ms;
using mp::gossip::MsgType;
using mp::gossip::State;
using mp::gossip::SwimDriver;

namespace {

mp::gossip::Options options(size_t maxMembers = 64) {
    mp::gossip::Options o;
    o.name = "a";
    o.bindIp = "127.0.0.1";
    o.maxMembers = maxMembers;
    o.timing.pushPullInterval = Ms(3600 * 1000);  // no TCP sync within a test
    o.timing.gossipToTheDead = Ms(3600 * 1000);   // the dead stay listed
    return o;
}

// memberlist's suspicion timeout for n members: suspicionMult * max(1, log10(n)) * interval.
Ms suspicionMin(const mp::gossip::Options& o, size_t n) {
    double scale = std::max(1.0, std::log10(static_cast<double>(n)));
    return Ms(static_cast<int64_t>(o.timing.suspicionMult * scale *
                                   static_cast<double>(o.timing.probeInterval.count())));
}

}  // namespace

TEST_SUITE("swim") {
    TEST_CASE(
        "a member that answers no probe is suspect at the probe's deadline, dead at the suspicion "
        "timeout") {
        mp::gossip::Options o = options();
        SwimDriver d(o);
        d.alive("b", 2, 1);  // a single other member: every probe goes to it
        CHECK(d.state("b") == State::Alive);
        d.run(o.timing.probeInterval);  // the first probe is sent one interval after start
        auto pings = d.sentOf(MsgType::Ping);
        REQUIRE(pings.size() == 1);
        mp::gossip::Ping ping;
        REQUIRE(decode(pings[0].data(), pings[0].size(), ping));
        CHECK(ping.node == "b");
        // No ack: suspect when the probe's interval is over, not one step earlier.
        d.run(o.timing.probeInterval - Ms(10));
        CHECK(d.state("b") == State::Alive);
        d.run(Ms(10));
        CHECK(d.state("b") == State::Suspect);
        CHECK(d.stats().probeFailures == 1);
        CHECK(d.stats().suspicions == 1);
        // Two members: Lifeguard expects no confirmations (k = 0), the deadline is the minimum.
        Ms timeout = suspicionMin(o, 2);
        CHECK(timeout == o.timing.probeInterval * o.timing.suspicionMult);
        d.run(timeout - Ms(10));
        CHECK(d.state("b") == State::Suspect);
        d.run(Ms(10));
        CHECK(d.state("b") == State::Dead);
        CHECK(d.stats().deaths == 1);
    }

    TEST_CASE("an acked probe keeps the member alive and lowers nothing") {
        mp::gossip::Options o = options();
        SwimDriver d(o);
        d.alive("b", 2, 1);
        for (int round = 0; round < 5; ++round) {
            d.sent.clear();
            d.run(o.timing.probeInterval);
            auto pings = d.sentOf(MsgType::Ping);
            REQUIRE(pings.size() == 1);
            mp::gossip::Ping ping;
            REQUIRE(decode(pings[0].data(), pings[0].size(), ping));
            d.receive("127.0.0.2", 7946, encode(mp::gossip::Ack{ping.seqNo, {}}));
        }
        d.run(o.timing.probeInterval);
        CHECK(d.state("b") == State::Alive);
        CHECK(d.stats().probeFailures == 0);
        CHECK(d.stats().awareness == 0);
    }

    TEST_CASE("a suspect refuting with a higher incarnation is alive; an older alive is ignored") {
        mp::gossip::Options o = options();
        SwimDriver d(o);
        d.alive("b", 2, 5);
        d.receive("127.0.0.3", 7946, encode(mp::gossip::Suspect{5, "b", "c"}));
        CHECK(d.state("b") == State::Suspect);
        d.alive("b", 2, 5);  // the same incarnation does not refute
        CHECK(d.state("b") == State::Suspect);
        d.alive("b", 2, 6);
        CHECK(d.state("b") == State::Alive);
        CHECK(d.member("b")->incarnation == 6);
        // An alive message older than what is known changes nothing, its tags included.
        auto tags = d.member("b")->tags;
        d.alive("b", 2, 3, mp::gossip::encodeTags({{"role", "master"}}));
        CHECK(d.member("b")->incarnation == 6);
        CHECK(d.member("b")->tags == tags);
        CHECK_FALSE((tags.count("role") != 0 && tags.at("role") == "master"));
        // A suspicion of an older incarnation is ignored too.
        d.receive("127.0.0.3", 7946, encode(mp::gossip::Suspect{5, "b", "c"}));
        CHECK(d.state("b") == State::Alive);
    }

    TEST_CASE("suspected itself, a node refutes with its incarnation plus one and gossips it") {
        mp::gossip::Options o = options();
        SwimDriver d(o);
        d.alive("b", 2, 1);
        uint32_t mine = d.member("a")->incarnation;
        d.receive("127.0.0.2", 7946, encode(mp::gossip::Suspect{mine, "a", "b"}));
        CHECK(d.state("a") == State::Alive);
        CHECK(d.member("a")->incarnation == mine + 1);
        CHECK(d.stats().refutations == 1);
        d.sent.clear();
        d.run(o.timing.gossipInterval);
        bool told = false;
        for (const auto& raw : d.sentOf(MsgType::Alive)) {
            mp::gossip::Alive a;
            told = told || (decode(raw.data(), raw.size(), a) && a.node == "a" &&
                            a.incarnation == mine + 1);
        }
        CHECK(told);
    }

    TEST_CASE(
        "failed probes of a member that answered before raise the awareness, which slows probing") {
        mp::gossip::Options o = options();
        SwimDriver d(o);
        d.alive("b", 2, 1);
        d.run(o.timing.probeInterval);
        auto pings = d.sentOf(MsgType::Ping);
        REQUIRE(pings.size() == 1);
        mp::gossip::Ping ping;
        REQUIRE(decode(pings[0].data(), pings[0].size(), ping));
        d.receive("127.0.0.2", 7946, encode(mp::gossip::Ack{ping.seqNo, {}}));
        d.run(o.timing.probeInterval);  // the ack is counted: b has answered once
        CHECK(d.stats().awareness == 0);
        CHECK(d.probeInterval() == o.timing.probeInterval);
        d.run(o.timing.probeInterval);  // this probe is not answered
        CHECK(d.stats().probeFailures == 1);
        CHECK(d.stats().awareness == 1);
        CHECK(d.probeInterval() == o.timing.probeInterval * 2);
    }

    TEST_CASE("a member never heard from raises no awareness when it does not answer") {
        mp::gossip::Options o = options();
        SwimDriver d(o);
        d.alive("b", 2, 1);
        d.run(o.timing.probeInterval * 2);
        CHECK(d.stats().probeFailures == 1);
        CHECK(d.stats().awareness == 0);  // a fake member announced by anyone (no keys)
    }

    TEST_CASE(
        "a gossiped change is retransmitted at most retransmitMult * ceil(log10(n + 1)) times") {
        mp::gossip::Options o = options();
        o.timing.probeInterval = Ms(3600 * 1000);  // no probe: a probe tells a suspect directly
        SwimDriver d(o);
        for (int i = 2; i <= 5; ++i) {
            d.alive(std::string(1, static_cast<char>('a' + i - 1)), i, 1);
        }
        d.run(o.timing.gossipInterval * 20);  // the join broadcasts are spent
        d.sent.clear();
        d.receive("127.0.0.2", 7946, encode(mp::gossip::Suspect{1, "c", "b"}));
        d.run(o.timing.gossipInterval * 40);
        size_t sends = 0;
        for (const auto& raw : d.sentOf(MsgType::Suspect)) {
            mp::gossip::Suspect s;
            sends += decode(raw.data(), raw.size(), s) && s.node == "c" ? 1 : 0;
        }
        size_t n = 5;  // members
        auto limit = static_cast<size_t>(o.timing.retransmitMult *
                                         std::ceil(std::log10(static_cast<double>(n + 1))));
        CHECK(sends > 0);
        CHECK(sends <= limit);
    }

    TEST_CASE("members beyond maxMembers are refused and counted") {
        SwimDriver d(options(3));
        d.alive("b", 2, 1);
        d.alive("c", 3, 1);
        d.alive("d", 4, 1);
        CHECK(d.member("c").has_value());
        CHECK_FALSE(d.member("d").has_value());
        CHECK(d.stats().refusedFull == 1);
    }

    TEST_CASE("a member that says it is dead itself has left") {
        SwimDriver d(options());
        d.alive("b", 2, 3);
        d.receive("127.0.0.2", 7946, encode(mp::gossip::Dead{3, "b", "b"}));
        CHECK(d.state("b") == State::Left);
        d.alive("c", 3, 1);
        d.receive("127.0.0.2", 7946, encode(mp::gossip::Dead{1, "c", "b"}));
        CHECK(d.state("c") == State::Dead);
    }
}
