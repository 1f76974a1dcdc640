// SPDX-License-Identifier: Apache-2.0
// Membership's lifecycle: sockets bound, threads started and stopped, join, leave, views.
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "membership_internal.hpp"

namespace mp::gossip {

using namespace member;  // its bounds and socket helpers (membership_internal.hpp)

Membership::Membership(Options opt, Log log)
    : opt_(std::move(opt)),
      log_(std::move(log)),
      keys_(std::make_shared<const Keyring>(opt_.keys)),
      rng_(std::random_device{}()) {}

bool Membership::setKeys(const Keyring& keys) {
    if (opt_.keys.empty() || keys.empty()) {
        return false;  // encryption is chosen at start, as memberlist does
    }
    std::atomic_store(&keys_, std::make_shared<const Keyring>(keys));
    return true;
}

Keyring Membership::keys() const { return *keyring(); }

Membership::~Membership() {
    stop(false);
    // A Membership that never started (the tests drive one by hand) may still have spawned
    // outgoing exchanges from periodic(): they hold `this`, so they are cancelled and waited for.
    dialsCancelled_ = true;
    while (tcpJobs_.load() > 0) {
        std::this_thread::sleep_for(Ms(10));
    }
}

void Membership::start() {
    if (opt_.advertiseIp.empty()) {
        opt_.advertiseIp = opt_.bindIp == "0.0.0.0" ? routableIpv4() : opt_.bindIp;
    }
    sourceIp_ = sourceIpFor(opt_.bindIp, opt_.advertiseIp);
    if (!ipBytes(opt_.advertiseIp, selfAddr_)) {
        throw std::runtime_error("gossip advertise address must be an IPv4 address: " +
                                 opt_.advertiseIp);
    }
    opt_.maxMembers = std::max<size_t>(opt_.maxMembers, 1);
    // A push-pull carries every member (at most about 850 bytes each within the bounds) and
    // serf's state: what maxMembers needs, with room, and never more than kMaxStream.
    streamLimit_ = std::min(kMaxStream, (1u << 20) + opt_.maxMembers * 1024);
    // TCP and UDP on the same port; with port 0 the TCP port is chosen first and UDP follows.
    for (int attempt = 0; attempt < 20; ++attempt) {
        int t = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int u = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (t < 0 || u < 0) {
            throw std::runtime_error(std::string("gossip socket: ") + std::strerror(errno));
        }
        int one = 1;
        ::setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in sa = sockAddr(opt_.bindIp, opt_.port);
        if (::bind(t, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(t, 64) != 0) {
            std::string why = std::strerror(errno);
            ::close(t);
            ::close(u);
            throw std::runtime_error("cannot bind gossip TCP " + opt_.bindIp + ":" +
                                     std::to_string(opt_.port) + ": " + why);
        }
        socklen_t len = sizeof sa;
        ::getsockname(t, reinterpret_cast<sockaddr*>(&sa), &len);
        uint16_t chosen = ntohs(sa.sin_port);
        sockaddr_in ua = sockAddr(opt_.bindIp, chosen);
        if (::bind(u, reinterpret_cast<sockaddr*>(&ua), sizeof ua) != 0) {
            std::string why = std::strerror(errno);
            ::close(t);
            ::close(u);
            if (opt_.port == 0) {
                continue;  // that port is taken for UDP: another one
            }
            throw std::runtime_error("cannot bind gossip UDP " + opt_.bindIp + ":" +
                                     std::to_string(opt_.port) + ": " + why);
        }
        int rcv = 4 << 20;
        ::setsockopt(u, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        tcp_ = t;
        udp_ = u;
        port_ = chosen;
        break;
    }
    if (udp_ < 0) {
        throw std::runtime_error("no free gossip port on " + opt_.bindIp);
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        addSelf(now());
    }
    running_ = true;
    udpThread_ = std::thread([this] { udpLoop(); });
    timerThread_ = std::thread([this] { timerLoop(); });
    tcpThread_ = std::thread([this] { tcpLoop(); });
}

std::vector<std::string> localIpv4s() {
    std::vector<std::string> out;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) {
        return out;
    }
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
        if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
            (i->ifa_flags & IFF_UP) == 0) {
            continue;
        }
        char buf[INET_ADDRSTRLEN] = {};
        const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
        if (::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf) != nullptr) {
            out.emplace_back(buf);
        }
    }
    ::freeifaddrs(list);
    return out;
}

std::string routableIpv4() {
    std::string other;
    for (const std::string& ip : localIpv4s()) {
        in_addr a{};
        if (::inet_pton(AF_INET, ip.c_str(), &a) != 1 || !unusableAddress(ip).empty()) {
            continue;
        }
        const uint32_t h = ntohl(a.s_addr);
        if ((h >> 24) == 127 || (h >> 16) == 0xa9fe) {  // loopback, link-local
            continue;
        }
        const bool priv = (h >> 24) == 10 || (h >> 20) == 0xac1 || (h >> 16) == 0xc0a8 ||
                          (h >> 22) == (0x64400000u >> 22);
        if (priv) {
            return ip;
        }
        if (other.empty()) {
            other = ip;
        }
    }
    return other.empty() ? "127.0.0.1" : other;
}

std::string sourceIpFor(const std::string& bind, const std::string& advertise) {
    if (bind != "0.0.0.0") {
        return bind;
    }
    auto local = localIpv4s();
    return std::find(local.begin(), local.end(), advertise) != local.end() ? advertise : "";
}

bool Membership::isSelf(const std::string& ip, uint16_t port) const {
    if (port != port_) {
        return false;
    }
    if (ip == opt_.advertiseIp || ip == opt_.bindIp) {
        return true;
    }
    if (opt_.bindIp != "0.0.0.0") {
        return false;
    }
    if (ip.rfind("127.", 0) == 0) {
        return true;
    }
    auto local = localIpv4s();
    return std::find(local.begin(), local.end(), ip) != local.end();
}

void Membership::addSelf(Clock::time_point now) {
    Member self;
    self.name = opt_.name;
    self.addr = selfAddr_;
    self.ip = opt_.advertiseIp;
    self.port = port_;
    self.meta = encodeTags(opt_.tags);
    self.vsn = kVsn;
    self.incarnation = incarnation_;
    self.state = State::Alive;
    self.stateChange = now;
    self.tags = opt_.tags;
    members_[self.name] = self;
    nextProbe_ = now + opt_.timing.probeInterval;
    nextGossip_ = now + opt_.timing.gossipInterval;
    // A random first push-pull, so that nodes started together do not sync in step.
    nextPushPull_ =
        now + Ms(static_cast<int64_t>(rng_() %
                                      static_cast<uint64_t>(opt_.timing.pushPullInterval.count())));
}

void Membership::stop(bool leaveFirst) {
    if (!running_.load()) {
        return;
    }
    if (leaveFirst) {
        leave();
    }
    dialsCancelled_ = true;
    stopping_ = true;
    running_ = false;
    cv_.notify_all();
    for (std::thread* t : {&udpThread_, &timerThread_, &tcpThread_}) {
        if (t->joinable()) {
            t->join();
        }
    }
    {
        // Served connections: what blocks them ends at once, then they are waited for.
        std::unique_lock<std::mutex> lock(tcpMu_);
        for (int fd : tcpServedFds_) {
            ::shutdown(fd, SHUT_RDWR);
        }
        tcpCv_.wait(lock, [this] { return tcpServed_ == 0; });
    }
    while (tcpJobs_.load() > 0) {  // outgoing exchanges: cancelled, they end within kSlice
        std::this_thread::sleep_for(Ms(10));
    }
    ::close(udp_);
    ::close(tcp_);
    udp_ = tcp_ = -1;
}

void Membership::leave() {
    std::unique_lock<std::mutex> lock(mu_);
    if (left_) {
        return;
    }
    // serf's order: its leave intent first (so serf says `left`, not `failed`), then, once
    // that has gone out in a gossip round, memberlist's dead-from-self. Each wait ends when
    // the message has been sent to a round's worth of members (one gossip interval: 200 ms
    // on a LAN, 500 ms on a WAN), and after kLeaveWait at most: a stop stays short in every
    // profile. Members spread both further by themselves.
    uint64_t intent = broadcast("", encodeUser(serfLeaveIntent(serfClock_ + 1, opt_.name)));
    waitSent(lock, intent, static_cast<int>(opt_.timing.gossipNodes), kLeaveWait);
    left_ = true;
    Member* self = find(opt_.name);
    Dead d{incarnation_, opt_.name, opt_.name};
    if (self != nullptr) {
        self->state = State::Left;
        self->stateChange = now();
    }
    uint64_t dead = broadcast(opt_.name, encode(d));
    changed();
    waitSent(lock, dead, static_cast<int>(opt_.timing.gossipNodes), kLeaveWait);
}

void Membership::waitSent(std::unique_lock<std::mutex>& lock, uint64_t id, int sends, Ms limit) {
    auto until = Clock::now() + limit;
    while (running_.load() && Clock::now() < until) {
        size_t peers = 0;  // who gossip reaches
        for (const auto& [name, m] : members_) {
            peers += name != opt_.name && (m.state == State::Alive || m.state == State::Suspect);
        }
        auto it = std::find_if(queue_.begin(), queue_.end(),
                               [&](const Broadcast& b) { return b.id == id; });
        if (peers == 0 || it == queue_.end() ||
            it->sends >= std::min(sends, static_cast<int>(peers))) {
            return;
        }
        cv_.wait_for(lock, Ms(10));
    }
}

bool Membership::join(const std::string& ip, uint16_t port, std::string& error) {
    if (std::string why = unusableAddress(ip); !why.empty()) {
        error = ip + " is " + why;
        return false;
    }
    if (isSelf(ip, port)) {
        error = "that is this node's own gossip address";
        return false;
    }
    Bytes request;
    {
        std::lock_guard<std::mutex> lock(mu_);
        request = localState(true);
    }
    StreamMsg reply;
    if (!tcpExchange(ip, port, request, true, reply, error)) {
        return false;
    }
    if (reply.type == MsgType::Err) {
        error = "remote error: " + reply.err.error;
        return false;
    }
    if (reply.type != MsgType::PushPull) {
        error = "unexpected reply to a push-pull";
        return false;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.pushPulls;
        mergeRemote(reply.pushPull);
    }
    return true;
}

std::vector<MemberInfo> Membership::members() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<MemberInfo> out;
    auto now = this->now();
    for (const auto& [name, m] : members_) {
        MemberInfo i;
        i.name = name;
        i.ip = m.ip;
        i.port = m.port;
        i.state = m.state;
        i.incarnation = m.incarnation;
        i.tags = m.tags;
        i.self = name == opt_.name;
        i.sinceMs = std::chrono::duration_cast<Ms>(now - m.stateChange).count();
        out.push_back(std::move(i));
    }
    return out;
}

Stats Membership::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
}

}  // namespace mp::gossip
