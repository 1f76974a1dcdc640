// SPDX-License-Identifier: Apache-2.0
// SWIM membership with Lifeguard's refinements, as HashiCorp memberlist does it and on its
// wire (wire.hpp): UDP probes, indirect probes through k members with nacks, a TCP fallback
// probe, suspicion with incarnation numbers, refutation and Lifeguard's dynamic suspicion
// timeout, the awareness score that slows a struggling node's probing, piggybacked gossip with
// a bounded retransmit count, TCP push-pull state sync on join and periodically, and graceful
// leave (serf's leave intent, then `dead` from the node itself, so serf shows it as `left`).
//
// One UDP socket and one TCP listener on the same address and port, three threads (packets,
// timers, TCP accept) and one thread per TCP connection being served (at most
// kMaxTcpServed at once, kMaxTcpPerSource from one address, each with a deadline), one mutex
// around the state. Timings default to memberlist's LAN profile.
//
// Bounds against what peers send: member names of at most 256 bytes and meta of at most 512
// (memberlist's MetaMaxSize), at most `maxMembers` members (further ones refused and counted),
// IPv4 unicast addresses only. Without keys nothing is authenticated, so only failed probes of
// members that have answered a probe before raise the awareness score (Lifeguard's local
// health), and so do refutations only when the cluster is encrypted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "wire.hpp"

namespace mp::gossip {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

struct Timing {
    Ms probeInterval{1000};
    Ms probeTimeout{500};
    size_t indirectChecks = 3;
    int suspicionMult = 4;
    int suspicionMaxTimeoutMult = 6;
    int retransmitMult = 4;
    Ms gossipInterval{200};
    size_t gossipNodes = 3;
    Ms gossipToTheDead{30000};
    Ms pushPullInterval{30000};
    Ms tcpTimeout{2000};
    int awarenessMax = 8;
};

struct Options {
    std::string name;         // unique member name
    std::string bindIp;       // IPv4 dotted quad; 0.0.0.0: every interface
    std::string advertiseIp;  // the address members reach it at (empty: bindIp)
    uint16_t port = 0;        // 0: any free port (the same for UDP and TCP)
    std::string group;        // members whose `group` tag differs are refused (no tag: "")
    std::map<std::string, std::string> tags;
    Keyring keys;  // empty: no encryption
    Timing timing;
    size_t maxMembers = 1024;  // members known at once, this one, dead and left ones included
    // Tests only (tests/swim_test.cpp): the time (steady_clock when empty) and where UDP
    // packets go (the socket when empty), so that the SWIM state runs without sockets or sleeps.
    std::function<Clock::time_point()> clock;
    std::function<void(const std::string& ip, uint16_t port, const Bytes& packet)> sendUdpHook;
};

struct MemberInfo {
    std::string name;
    std::string ip;
    uint16_t port = 0;
    State state = State::Alive;
    uint32_t incarnation = 0;
    std::map<std::string, std::string> tags;
    bool self = false;
    int64_t sinceMs = 0;  // how long it has been in this state
};

struct Stats {
    uint64_t udpIn = 0, udpOut = 0, tcpIn = 0, tcpOut = 0;
    uint64_t badPackets = 0;       // garbage, bad CRC, undecodable
    uint64_t decryptFailures = 0;  // not authenticated by any key (or plain when keys are set)
    uint64_t refusedGroup = 0;     // members of another group
    uint64_t refusedFull = 0;      // new members beyond the member table's bound
    uint64_t refusedOversize = 0;  // member messages with a name or meta over the bounds
    uint64_t refusedAddress = 0;   // members announced at an address nobody has (0.0.0.0...)
    uint64_t tcpRefused = 0;       // TCP connections closed at once: too many being served
    uint64_t probes = 0, probeFailures = 0, tcpFallbackOk = 0;
    uint64_t suspicions = 0, refutations = 0, deaths = 0;
    uint64_t pushPulls = 0;
    int awareness = 0;
};

/// The IPv4 addresses of this host's interfaces that are up (loopback included).
std::vector<std::string> localIpv4s();
/// The address to advertise when bound to every interface, as memberlist's GetPrivateIP: the
/// first private one (10/8, 172.16/12, 192.168/16, 100.64/10) of an interface that is up and
/// not loopback, else the first other usable one, else 127.0.0.1.
std::string routableIpv4();
/// The source address of what a member bound to `bind` and advertised as `advertise` dials:
/// `bind`, or when that is every interface (0.0.0.0) `advertise` if it is this host's, else ""
/// (the kernel chooses).
std::string sourceIpFor(const std::string& bind, const std::string& advertise);

class Membership {
  public:
    using Log = std::function<void(int level, const std::string&)>;  // 0 info, 1 warn
    using Change = std::function<void()>;

    Membership(Options opt, Log log);
    ~Membership();
    Membership(const Membership&) = delete;
    Membership& operator=(const Membership&) = delete;

    /// Binds (throws std::runtime_error with the reason) and starts the threads.
    void start();
    /// Leaves gracefully when `leave` (serf leave intent, then dead-from-self), then stops.
    void stop(bool leave);
    /// Push-pull join through one member; false with the reason.
    bool join(const std::string& ip, uint16_t port, std::string& error);
    /// Graceful leave without stopping (the node stays reachable but is `left` for others).
    /// Waits until each of its two messages has gone out in a gossip round (at most about
    /// kLeaveWait each), not a fixed time: bounded for every profile.
    void leave();
    /// Outgoing TCP exchanges (joins, push-pulls, fallback pings) end within 100 ms and new
    /// ones fail at once: the first step of a stop, before the threads that dial are joined.
    void cancelDials() { dialsCancelled_ = true; }

    uint16_t port() const { return port_; }
    const std::string& name() const { return opt_.name; }
    /// Whether ip:port is this member: its advertised or bound address, or, bound to every
    /// interface, any address of this host.
    bool isSelf(const std::string& ip, uint16_t port) const;
    std::vector<MemberInfo> members() const;
    Stats stats() const;
    /// Replaces the keyring (rotation). Only for a member started with keys: false otherwise,
    /// or when `keys` is empty.
    bool setKeys(const Keyring& keys);
    Keyring keys() const;
    /// Called (outside the lock) when a member joins, changes state or tags, or goes away.
    void onChange(Change fn) { change_ = std::move(fn); }

  private:
    friend class SwimDriver;  // tests/swim_test.cpp

    struct Member {
        std::string name;
        Bytes addr;  // 4 bytes
        std::string ip;
        uint16_t port = 0;
        Bytes meta;
        Bytes vsn;
        uint32_t incarnation = 0;
        State state = State::Alive;
        Clock::time_point stateChange;
        std::map<std::string, std::string> tags;
        bool answered = false;  // it acknowledged one of our probes at least once
    };
    struct Suspicion {
        Clock::time_point start;
        Clock::time_point deadline;
        Ms min{0}, max{0};
        size_t k = 0;
        std::vector<std::string> confirmations;
        uint32_t incarnation = 0;
    };
    struct Probe {
        uint32_t seq = 0;
        std::string target;
        Clock::time_point sent;
        Clock::time_point indirectAt;  // probeTimeout after sent
        Clock::time_point deadline;    // sent + probe interval
        bool indirectSent = false;
        bool acked = false;
        size_t expectedNacks = 0;
        size_t nacks = 0;
    };
    struct Relay {  // an indirect ping we run for another member
        uint32_t origSeq = 0;
        std::string ip;
        uint16_t port = 0;
        bool nack = false;
        Clock::time_point nackAt;
    };
    struct Broadcast {
        std::string about;  // member name ("" for serf intents)
        Bytes msg;
        int sends = 0;
        uint64_t id = 0;
    };

    // Packets.
    void udpLoop();
    void timerLoop();
    void tcpLoop();
    void handlePacket(const std::string& ip, uint16_t port, const uint8_t* p, size_t n, int depth);
    void handleTcp(int fd);
    void serveTcp(int fd, const std::string& source);
    void sendUdp(const std::string& ip, uint16_t port, const Bytes& msg, bool crc);
    bool tcpExchange(const std::string& ip, uint16_t port, const Bytes& request, bool wantReply,
                     StreamMsg& reply, std::string& error);

    // State (all under mu_).
    std::string sourceIp_;
    Member* find(const std::string& name);
    Bytes localState(bool join);
    void mergeRemote(const PushPull& pp);
    void onAlive(const Alive& a, bool bootstrap);
    void onSuspect(const Suspect& s);
    void onDead(const Dead& d);
    void refute(uint32_t accused);
    void suspectMember(Member& m, const std::string& from);
    void confirm(Member& m, const std::string& from);
    void markDead(Member& m, const std::string& from);
    uint64_t broadcast(const std::string& about, Bytes msg);
    /// Waits (mu_ held through `lock`) until broadcast `id` has been sent `sends` times, is no
    /// longer queued, or `limit` has passed.
    void waitSent(std::unique_lock<std::mutex>& lock, uint64_t id, int sends, Ms limit);
    /// A member whose failed probes say something about this node's own health: every member
    /// of an encrypted cluster (it holds a key), otherwise one that has answered a probe.
    bool trusted(const Member& m) const { return !opt_.keys.empty() || m.answered; }
    Alive selfAlive() const;
    void changed();
    size_t aliveCount() const;
    int retransmitLimit() const;

    // Periodic work.
    Clock::time_point now() const { return opt_.clock ? opt_.clock() : Clock::now(); }
    /// This node in its own table and the first deadlines (start(), mu_ held).
    void addSelf(Clock::time_point now);
    /// One round of the timer thread (mu_ held).
    void periodic(Clock::time_point now);
    void probeNext(Clock::time_point now);
    void probeDeadlines(Clock::time_point now);
    void gossip(Clock::time_point now);
    void suspicionTimers(Clock::time_point now);
    void relayTimers(Clock::time_point now);
    void reap(Clock::time_point now);
    void awarenessDelta(int d);
    Ms probeIntervalNow() const;

    std::shared_ptr<const Keyring> keyring() const { return std::atomic_load(&keys_); }

    Options opt_;
    Log log_;
    std::shared_ptr<const Keyring> keys_;  // read by every thread, swapped whole by setKeys
    Change change_;
    uint16_t port_ = 0;
    Bytes selfAddr_;
    int udp_ = -1;
    int tcp_ = -1;
    std::atomic<bool> running_{false};
    std::thread udpThread_, timerThread_, tcpThread_;
    std::vector<std::thread> workers_;  // outgoing TCP (fallback pings, push-pulls)
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool changedFlag_ = false;
    std::mt19937_64 rng_;
    std::map<std::string, Member> members_;
    std::map<std::string, Suspicion> suspicions_;
    std::deque<Broadcast> queue_;
    std::map<uint32_t, Relay> relays_;
    Probe probe_;
    std::shared_ptr<std::atomic<bool>> tcpOk_;  // the current probe's TCP fallback succeeded
    bool probing_ = false;
    std::vector<std::string> probeOrder_;
    size_t probeIndex_ = 0;
    uint32_t seq_ = 0;
    uint32_t incarnation_ = 1;
    uint64_t serfClock_ = 0;  // the largest serf Lamport time witnessed
    bool left_ = false;
    Clock::time_point nextProbe_, nextGossip_, nextPushPull_;
    Stats stats_;
    std::atomic<int> tcpJobs_{0};
    std::atomic<bool> dialsCancelled_{false};
    std::atomic<bool> stopping_{false};   // served TCP connections end within 100 ms
    std::atomic<size_t> tcpBuffered_{0};  // bytes read and held by served connections
    std::set<int> tcpServedFds_;          // under tcpMu_: shut down at stop
    size_t streamLimit_ = 0;              // largest TCP message read (from maxMembers)
    std::mutex tcpMu_;                    // the connections being served
    std::condition_variable tcpCv_;
    size_t tcpServed_ = 0;
    std::map<std::string, size_t> tcpPerSource_;
    uint64_t nextBroadcastId_ = 0;
};

}  // namespace mp::gossip
