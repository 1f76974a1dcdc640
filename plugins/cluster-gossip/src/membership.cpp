// SPDX-License-Identifier: Apache-2.0
#include "membership.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
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

namespace mp::gossip {

namespace {

constexpr size_t kUdpBuffer = 1400;           // what one gossip datagram may carry
constexpr size_t kMaxStream = 8 << 20;        // largest TCP message accepted
constexpr size_t kMaxDecompressed = 1 << 20;  // largest UDP message after LZW
constexpr int kMaxDepth = 4;                  // nesting of compound/compress/crc
constexpr size_t kMaxRelays = 1024;           // indirect pings run for others at once
constexpr int kMaxTcpJobs = 16;               // outgoing TCP exchanges at once
constexpr size_t kMaxTcpServed = 32;          // incoming TCP connections served at once
constexpr size_t kMaxTcpPerSource = 8;        // of them from one address
constexpr size_t kMaxTcpBuffered = 16 << 20;  // bytes all served connections may hold at once
constexpr Ms kSlice{100};                     // how often blocking waits look at cancellation
constexpr Ms kLeaveWait{750};                 // each of a leave's two messages, at most

bool ipBytes(const std::string& ip, Bytes& out) {
    in_addr a{};
    if (inet_pton(AF_INET, ip.c_str(), &a) != 1) {
        return false;
    }
    out.assign(reinterpret_cast<uint8_t*>(&a), reinterpret_cast<uint8_t*>(&a) + 4);
    return true;
}

std::string ipString(const Bytes& addr) {
    if (addr.size() == 4) {
        char buf[INET_ADDRSTRLEN] = {0};
        inet_ntop(AF_INET, addr.data(), buf, sizeof buf);
        return buf;
    }
    if (addr.size() == 16) {
        char buf[INET6_ADDRSTRLEN] = {0};
        inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
        return buf;
    }
    return "";
}

sockaddr_in sockAddr(const std::string& ip, uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
    return sa;
}

uint8_t pmax(const Bytes& vsn) { return vsn.size() == 6 ? vsn[1] : 0; }

// Sends all of `b` on a non-blocking socket before `deadline`, unless `cancelled` turns true.
bool sendAll(int fd, const Bytes& b, Clock::time_point deadline,
             const std::atomic<bool>& cancelled) {
    size_t off = 0;
    while (off < b.size()) {
        ssize_t w = ::send(fd, b.data() + off, b.size() - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += static_cast<size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            return false;
        }
        auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
        if (left.count() <= 0 || cancelled.load()) {
            return false;
        }
        pollfd pfd{fd, POLLOUT, 0};
        ::poll(&pfd, 1, static_cast<int>(std::min(left, kSlice).count()));
    }
    return true;
}

// Reads one stream message of at most `maxBytes` (incremental parse after each read) from a
// non-blocking socket until `deadline`, unless `cancelled` turns true. With `budget`, the bytes
// held are counted there and the read fails when the total would pass kMaxTcpBuffered.
Parse readMessage(int fd, const Keyring* keys, Clock::time_point deadline, size_t maxBytes,
                  const std::atomic<bool>& cancelled, std::atomic<size_t>* budget, StreamMsg& out,
                  std::string& error) {
    Bytes buf;
    size_t charged = 0;
    auto result = [&](Parse r) {
        if (budget != nullptr) {
            budget->fetch_sub(charged);
        }
        return r;
    };
    uint8_t chunk[16384];
    while (true) {
        if (!buf.empty()) {
            Parse r = parseStream(buf.data(), buf.size(), keys, maxBytes, out, error);
            if (r != Parse::NeedMore) {
                return result(r);
            }
        }
        auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
        if (left.count() <= 0) {
            error = "timed out";
            return result(Parse::Bad);
        }
        if (cancelled.load()) {
            error = "cancelled";
            return result(Parse::Bad);
        }
        pollfd pfd{fd, POLLIN, 0};
        int pr = ::poll(&pfd, 1, static_cast<int>(std::min(left, kSlice).count()));
        if (pr <= 0) {
            continue;  // EINTR, or a slice without data: the deadline and cancellation decide
        }
        ssize_t r = ::recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        if (r <= 0) {
            error = buf.empty() ? "connection closed" : "connection closed mid-message";
            return result(Parse::Bad);
        }
        if (buf.size() + static_cast<size_t>(r) > maxBytes + 5) {
            error = "message too large";
            return result(Parse::Bad);
        }
        if (budget != nullptr) {
            auto n = static_cast<size_t>(r);
            if (budget->fetch_add(n) + n > kMaxTcpBuffered) {
                budget->fetch_sub(n);
                error = "too much TCP input held at once";
                return result(Parse::Bad);
            }
            charged += n;
        }
        buf.insert(buf.end(), chunk, chunk + r);
    }
}

}  // namespace

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

Membership::~Membership() { stop(false); }

void Membership::start() {
    if (!ipBytes(opt_.bindIp, selfAddr_)) {
        throw std::runtime_error("gossip bind address must be an IPv4 address: " + opt_.bindIp);
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
        Member self;
        self.name = opt_.name;
        self.addr = selfAddr_;
        self.ip = opt_.bindIp;
        self.port = port_;
        self.meta = encodeTags(opt_.tags);
        self.vsn = kVsn;
        self.incarnation = incarnation_;
        self.state = State::Alive;
        self.stateChange = Clock::now();
        self.tags = opt_.tags;
        members_[self.name] = self;
        auto now = Clock::now();
        nextProbe_ = now + opt_.timing.probeInterval;
        nextGossip_ = now + opt_.timing.gossipInterval;
        // A random first push-pull, so that nodes started together do not sync in step.
        nextPushPull_ =
            now + Ms(static_cast<int64_t>(
                      rng_() % static_cast<uint64_t>(opt_.timing.pushPullInterval.count())));
    }
    running_ = true;
    udpThread_ = std::thread([this] { udpLoop(); });
    timerThread_ = std::thread([this] { timerLoop(); });
    tcpThread_ = std::thread([this] { tcpLoop(); });
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
        self->stateChange = Clock::now();
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
    if ((ip == opt_.bindIp || opt_.bindIp == "0.0.0.0") && port == port_) {
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
    auto now = Clock::now();
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

// ---- packets ----

void Membership::udpLoop() {
    std::vector<uint8_t> buf(65536);
    while (running_.load()) {
        pollfd pfd{udp_, POLLIN, 0};
        if (::poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        sockaddr_in from{};
        socklen_t len = sizeof from;
        ssize_t n =
            ::recvfrom(udp_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n <= 0) {
            continue;
        }
        char ipbuf[INET_ADDRSTRLEN] = {0};
        inet_ntop(AF_INET, &from.sin_addr, ipbuf, sizeof ipbuf);
        std::string ip = ipbuf;
        uint16_t port = ntohs(from.sin_port);
        std::unique_lock<std::mutex> lock(mu_);
        ++stats_.udpIn;
        if (!opt_.keys.empty()) {
            Bytes plain;
            if (!keyring()->decryptUdp(buf.data(), static_cast<size_t>(n), plain)) {
                ++stats_.decryptFailures;
                continue;
            }
            handlePacket(ip, port, plain.data(), plain.size(), 0);
        } else {
            handlePacket(ip, port, buf.data(), static_cast<size_t>(n), 0);
        }
        bool notify = changedFlag_;
        changedFlag_ = false;
        lock.unlock();
        if (notify && change_) {
            change_();
        }
    }
}

void Membership::handlePacket(const std::string& ip, uint16_t port, const uint8_t* p, size_t n,
                              int depth) {
    if (n == 0 || depth > kMaxDepth) {
        ++stats_.badPackets;
        return;
    }
    const auto type = static_cast<MsgType>(p[0]);
    const uint8_t* body = p + 1;
    const size_t len = n - 1;
    switch (type) {
        case MsgType::HasCrc: {
            const uint8_t* inner = nullptr;
            size_t innerLen = 0;
            if (depth != 0 || !checkCrc(body, len, inner, innerLen)) {
                ++stats_.badPackets;
                return;
            }
            handlePacket(ip, port, inner, innerLen, depth + 1);
            return;
        }
        case MsgType::Compound: {
            std::vector<std::pair<const uint8_t*, size_t>> parts;
            size_t truncated = 0;
            if (!splitCompound(body, len, parts, truncated)) {
                ++stats_.badPackets;
                return;
            }
            stats_.badPackets += truncated;
            for (auto [q, m] : parts) {
                handlePacket(ip, port, q, m, depth + 1);
            }
            return;
        }
        case MsgType::Compress: {
            Bytes out;
            if (!decompressMsg(body, len, out, kMaxDecompressed)) {
                ++stats_.badPackets;
                return;
            }
            handlePacket(ip, port, out.data(), out.size(), depth + 1);
            return;
        }
        case MsgType::Ping: {
            Ping ping;
            if (!decode(body, len, ping)) {
                ++stats_.badPackets;
                return;
            }
            if (!ping.node.empty() && ping.node != opt_.name) {
                return;  // meant for a previous owner of this address
            }
            std::string toIp = ip;
            uint16_t toPort = port;
            // The ack goes where the ping says, unless that is nobody's address (0.0.0.0 would
            // be this host, a multicast address everyone's): then to where it came from.
            if (!ping.sourceAddr.empty() && ping.sourcePort != 0 &&
                unusableAddress(ping.sourceAddr).empty()) {
                toIp = ipString(ping.sourceAddr);
                toPort = ping.sourcePort;
            }
            sendUdp(toIp, toPort, encode(Ack{ping.seqNo, {}}), false);
            return;
        }
        case MsgType::IndirectPing: {
            IndirectPing ind;
            if (!decode(body, len, ind) || !unusableAddress(ind.target).empty()) {
                ++stats_.badPackets;
                return;
            }
            if (relays_.size() >= kMaxRelays) {
                return;
            }
            uint32_t seq = ++seq_;
            Relay r;
            r.origSeq = ind.seqNo;
            r.ip = ip;
            r.port = port;
            if (!ind.sourceAddr.empty() && ind.sourcePort != 0 &&
                unusableAddress(ind.sourceAddr).empty()) {
                r.ip = ipString(ind.sourceAddr);
                r.port = ind.sourcePort;
            }
            r.nack = ind.nack;
            r.nackAt = Clock::now() + opt_.timing.probeTimeout;
            relays_[seq] = r;
            Ping ping{seq, ind.node, selfAddr_, port_, opt_.name};
            sendUdp(ipString(ind.target), ind.port, encode(ping), false);
            return;
        }
        case MsgType::Ack: {
            Ack ack;
            if (!decode(body, len, ack)) {
                ++stats_.badPackets;
                return;
            }
            if (probing_ && ack.seqNo == probe_.seq) {
                probe_.acked = true;
                return;
            }
            auto it = relays_.find(ack.seqNo);
            if (it != relays_.end()) {
                sendUdp(it->second.ip, it->second.port, encode(Ack{it->second.origSeq, {}}), false);
                relays_.erase(it);
            }
            return;
        }
        case MsgType::Nack: {
            Nack nack;
            if (!decode(body, len, nack)) {
                ++stats_.badPackets;
                return;
            }
            if (probing_ && nack.seqNo == probe_.seq) {
                ++probe_.nacks;
            }
            return;
        }
        case MsgType::Alive: {
            Alive a;
            if (!decode(body, len, a)) {
                ++stats_.badPackets;
                return;
            }
            if (!withinLimits(a)) {
                ++stats_.refusedOversize;
                return;
            }
            onAlive(a, false);
            return;
        }
        case MsgType::Suspect: {
            Suspect s;
            if (!decode(body, len, s)) {
                ++stats_.badPackets;
                return;
            }
            if (!withinLimits(s)) {
                ++stats_.refusedOversize;
                return;
            }
            onSuspect(s);
            return;
        }
        case MsgType::Dead: {
            Dead d;
            if (!decode(body, len, d)) {
                ++stats_.badPackets;
                return;
            }
            if (!withinLimits(d)) {
                ++stats_.refusedOversize;
                return;
            }
            onDead(d);
            return;
        }
        case MsgType::User: {
            uint64_t lt = 0;
            if (serfLTime(body, len, lt)) {
                serfClock_ = std::max(serfClock_, lt);
            }
            return;
        }
        default:
            ++stats_.badPackets;
            return;
    }
}

void Membership::sendUdp(const std::string& ip, uint16_t port, const Bytes& msg, bool crc) {
    Bytes out = crc ? withCrc(msg) : msg;
    if (!opt_.keys.empty()) {
        out = keyring()->encryptUdp(out.data(), out.size());
    }
    sockaddr_in sa = sockAddr(ip, port);
    if (::sendto(udp_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) >
        0) {
        ++stats_.udpOut;
    }
}

void Membership::tcpLoop() {
    while (running_.load()) {
        pollfd pfd{tcp_, POLLIN, 0};
        if (::poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        sockaddr_in from{};
        socklen_t len = sizeof from;
        int fd =
            ::accept4(tcp_, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            continue;
        }
        char ipbuf[INET_ADDRSTRLEN] = {0};
        inet_ntop(AF_INET, &from.sin_addr, ipbuf, sizeof ipbuf);
        std::string source = ipbuf;
        // Each connection is served by a thread of its own, so that a slow or idle peer
        // (bounded by the TCP timeout) never holds up a join; how many at once is bounded,
        // from one address more tightly still. Beyond that the connection is closed at once.
        bool take = false;
        {
            std::lock_guard<std::mutex> lock(tcpMu_);
            size_t& mine = tcpPerSource_[source];
            take = tcpServed_ < kMaxTcpServed && mine < kMaxTcpPerSource;
            if (take) {
                ++tcpServed_;
                ++mine;
                tcpServedFds_.insert(fd);
            } else if (mine == 0) {
                tcpPerSource_.erase(source);
            }
        }
        if (take) {
            try {
                std::thread([this, fd, source] { serveTcp(fd, source); }).detach();
                continue;
            } catch (const std::system_error&) {
                std::lock_guard<std::mutex> lock(tcpMu_);
                --tcpServed_;
                if (--tcpPerSource_[source] == 0) {
                    tcpPerSource_.erase(source);
                }
                tcpServedFds_.erase(fd);
            }
        }
        ::close(fd);
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.tcpRefused;
    }
}

void Membership::serveTcp(int fd, const std::string& source) {
    handleTcp(fd);
    std::lock_guard<std::mutex> lock(tcpMu_);
    tcpServedFds_.erase(fd);
    ::close(fd);
    --tcpServed_;
    if (--tcpPerSource_[source] == 0) {
        tcpPerSource_.erase(source);
    }
    tcpCv_.notify_all();
}

void Membership::handleTcp(int fd) {
    StreamMsg msg;
    std::string error;
    auto ring = keyring();
    const Keyring* keys = opt_.keys.empty() ? nullptr : ring.get();
    const auto deadline = Clock::now() + opt_.timing.tcpTimeout;  // the whole exchange
    Parse r = readMessage(fd, keys, deadline, streamLimit_, stopping_, &tcpBuffered_, msg, error);
    auto wrap = [&](const Bytes& m) {
        return keys != nullptr ? keys->encryptTcp(m.data(), m.size()) : m;
    };
    std::unique_lock<std::mutex> lock(mu_);
    ++stats_.tcpIn;
    if (r != Parse::Ok) {
        ++stats_.badPackets;
        if (error.find("ncrypt") != std::string::npos) {
            ++stats_.decryptFailures;
            Bytes e = wrap(encode(ErrResp{error}));
            lock.unlock();
            sendAll(fd, e, deadline, stopping_);
        }
        return;
    }
    switch (msg.type) {
        case MsgType::Ping: {
            if (!msg.ping.node.empty() && msg.ping.node != opt_.name) {
                return;
            }
            Bytes ack = wrap(encode(Ack{msg.ping.seqNo, {}}));
            lock.unlock();
            sendAll(fd, ack, deadline, stopping_);
            return;
        }
        case MsgType::PushPull: {
            ++stats_.pushPulls;
            Bytes reply = wrap(localState(msg.pushPull.join));
            mergeRemote(msg.pushPull);
            bool notify = changedFlag_;
            changedFlag_ = false;
            lock.unlock();
            sendAll(fd, reply, deadline, stopping_);
            if (notify && change_) {
                change_();
            }
            return;
        }
        case MsgType::User: {
            uint64_t lt = 0;
            if (serfLTime(msg.user.data(), msg.user.size(), lt)) {
                serfClock_ = std::max(serfClock_, lt);
            }
            return;
        }
        default:
            return;
    }
}

bool Membership::tcpExchange(const std::string& ip, uint16_t port, const Bytes& request,
                             bool wantReply, StreamMsg& reply, std::string& error) {
    if (dialsCancelled_.load()) {
        error = "stopping";
        return false;
    }
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        error = std::strerror(errno);
        return false;
    }
    auto deadline = Clock::now() + opt_.timing.tcpTimeout;
    // From the member's own address (memberlist dials from any): a firewall or a partition
    // then treats every packet of a member alike.
    sockaddr_in src = sockAddr(opt_.bindIp, 0);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        // Not fatal: the kernel then picks the source address, as memberlist always lets it.
    }
    sockaddr_in sa = sockAddr(ip, port);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    if (rc != 0 && errno != EINPROGRESS) {
        error = "connect " + ip + ":" + std::to_string(port) + ": " + std::strerror(errno);
        ::close(fd);
        return false;
    }
    int pr = 0;
    while (pr == 0 && !dialsCancelled_.load()) {  // in slices: a stop cancels it
        auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
        if (left.count() <= 0) {
            break;
        }
        pollfd pfd{fd, POLLOUT, 0};
        pr = ::poll(&pfd, 1, static_cast<int>(std::min(left, kSlice).count()));
        if (pr < 0 && errno == EINTR) {
            pr = 0;
        }
    }
    int soerr = 0;
    socklen_t slen = sizeof soerr;
    if (pr <= 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
        error = "connect " + ip + ":" + std::to_string(port) + ": " +
                (soerr != 0 ? std::strerror(soerr) : "timed out");
        ::close(fd);
        return false;
    }
    auto ring = keyring();
    const Keyring* keys = opt_.keys.empty() ? nullptr : ring.get();
    Bytes out = keys != nullptr ? keys->encryptTcp(request.data(), request.size()) : request;
    bool ok = sendAll(fd, out, deadline, dialsCancelled_);
    if (!ok) {
        error = "send failed";
    } else if (wantReply) {
        ok = readMessage(fd, keys, deadline, streamLimit_, dialsCancelled_, nullptr, reply,
                         error) == Parse::Ok;
    }
    ::close(fd);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.tcpOut;
    return ok;
}

// ---- state ----

Membership::Member* Membership::find(const std::string& name) {
    auto it = members_.find(name);
    return it == members_.end() ? nullptr : &it->second;
}

Alive Membership::selfAlive() const {
    return Alive{incarnation_, opt_.name, selfAddr_, port_, encodeTags(opt_.tags), kVsn};
}

Bytes Membership::localState(bool join) {
    PushPull pp;
    pp.join = join;
    for (const auto& [name, m] : members_) {
        PushNodeState s;
        s.name = name;
        s.addr = m.addr;
        s.port = m.port;
        s.meta = m.meta;
        s.incarnation = m.incarnation;
        s.state = m.state;
        s.vsn = m.vsn;
        pp.nodes.push_back(std::move(s));
    }
    return encode(pp);
}

void Membership::mergeRemote(const PushPull& pp) {
    uint64_t lt = 0;
    if (!pp.userState.empty() && serfLTime(pp.userState.data(), pp.userState.size(), lt)) {
        serfClock_ = std::max(serfClock_, lt);
    }
    for (const PushNodeState& s : pp.nodes) {
        if (!withinLimits(s)) {
            ++stats_.refusedOversize;
            continue;
        }
        switch (s.state) {
            case State::Alive:
                onAlive(Alive{s.incarnation, s.name, s.addr, s.port, s.meta, s.vsn}, true);
                break;
            case State::Left:
                onDead(Dead{s.incarnation, s.name, s.name});
                break;
            case State::Dead:  // never instant death from someone else's view: suspicion
            case State::Suspect:
                onSuspect(Suspect{s.incarnation, s.name, opt_.name});
                break;
        }
    }
}

void Membership::onAlive(const Alive& a, bool /*bootstrap*/) {
    if (a.vsn.size() == 6 && (a.vsn[0] == 0 || a.vsn[1] == 0 || a.vsn[0] > a.vsn[1])) {
        return;
    }
    if (!unusableAddress(a.addr).empty()) {  // probes to it would go nowhere, or everywhere
        ++stats_.refusedAddress;
        return;
    }
    std::map<std::string, std::string> tags;
    decodeTags(a.meta, tags);
    if (a.node != opt_.name) {
        // Groups isolate clusters both ways; a member without the tag (a serf agent) is in "".
        auto g = tags.find("group");
        if ((g == tags.end() ? std::string() : g->second) != opt_.group) {
            ++stats_.refusedGroup;
            return;
        }
    }
    if (a.node == opt_.name) {
        if (left_ || a.incarnation < incarnation_) {
            return;
        }
        Alive mine = selfAlive();
        if (a.incarnation == incarnation_ && a.meta == mine.meta && a.vsn == mine.vsn) {
            return;
        }
        refute(a.incarnation);
        return;
    }
    Member* m = find(a.node);
    auto now = Clock::now();
    if (m == nullptr) {
        if (members_.size() >= opt_.maxMembers) {
            ++stats_.refusedFull;
            return;
        }
        Member n;
        n.name = a.node;
        n.addr = a.addr;
        n.ip = ipString(a.addr);
        n.port = a.port;
        n.meta = a.meta;
        n.vsn = a.vsn;
        n.incarnation = a.incarnation;
        n.state = State::Alive;
        n.stateChange = now;
        n.tags = std::move(tags);
        members_[a.node] = n;
        // A new member goes into the probe order at a random place, as memberlist does.
        if (!probeOrder_.empty()) {
            size_t at = rng_() % (probeOrder_.size() + 1);
            probeOrder_.insert(probeOrder_.begin() + static_cast<std::ptrdiff_t>(at), a.node);
        }
        broadcast(a.node, encode(a));
        log_(0, "member " + a.node + " (" + n.ip + ":" + std::to_string(a.port) + ") joined");
        changed();
        return;
    }
    bool moved = m->addr != a.addr || m->port != a.port;
    bool gone = m->state == State::Dead || m->state == State::Left;
    if (moved && !gone) {
        log_(1, "member " + a.node + " claims another address while alive: ignored");
        return;
    }
    if (a.incarnation <= m->incarnation && !(moved && gone)) {
        return;
    }
    bool stateChanged = m->state != State::Alive;
    bool tagsChanged = m->meta != a.meta;
    suspicions_.erase(a.node);
    m->addr = a.addr;
    m->ip = ipString(a.addr);
    m->port = a.port;
    m->meta = a.meta;
    m->vsn = a.vsn;
    m->incarnation = a.incarnation;
    m->tags = std::move(tags);
    if (stateChanged) {
        m->state = State::Alive;
        m->stateChange = now;
        log_(0, "member " + a.node + " is alive again");
    }
    broadcast(a.node, encode(a));
    if (stateChanged || tagsChanged) {
        changed();
    }
}

void Membership::onSuspect(const Suspect& s) {
    Member* m = find(s.node);
    if (m == nullptr || s.incarnation < m->incarnation) {
        return;
    }
    if (m->state == State::Suspect) {
        confirm(*m, s.from);
        return;
    }
    if (m->state != State::Alive) {
        return;
    }
    if (s.node == opt_.name) {
        if (!left_) {
            refute(s.incarnation);
        }
        return;
    }
    m->incarnation = s.incarnation;
    suspectMember(*m, s.from);
}

void Membership::suspectMember(Member& m, const std::string& from) {
    m.state = State::Suspect;
    auto now = Clock::now();
    m.stateChange = now;
    ++stats_.suspicions;
    // Lifeguard: the timeout starts long when others can confirm, and shrinks with each
    // independent confirmation down to the minimum.
    const auto n = static_cast<double>(members_.size());
    auto k = static_cast<size_t>(std::max(0, opt_.timing.suspicionMult - 2));
    if (members_.size() < k + 2) {
        k = 0;
    }
    double scale = std::max(1.0, std::log10(std::max(1.0, n)));
    auto min = Ms(static_cast<int64_t>(opt_.timing.suspicionMult * scale *
                                       static_cast<double>(opt_.timing.probeInterval.count())));
    auto max = min * opt_.timing.suspicionMaxTimeoutMult;
    Suspicion s;
    s.start = now;
    s.min = min;
    s.max = max;
    s.k = k;
    s.deadline = now + (k < 1 ? min : max);
    s.confirmations.push_back(from);
    s.incarnation = m.incarnation;
    suspicions_[m.name] = std::move(s);
    broadcast(m.name, encode(Suspect{m.incarnation, m.name, from}));
    log_(0, "member " + m.name + " is suspect (from " + from + ")");
    changed();
}

void Membership::confirm(Member& m, const std::string& from) {
    auto it = suspicions_.find(m.name);
    if (it == suspicions_.end()) {
        return;
    }
    Suspicion& s = it->second;
    size_t have = s.confirmations.size() - 1;  // the first is the suspector itself
    if (have >= s.k ||
        std::find(s.confirmations.begin(), s.confirmations.end(), from) != s.confirmations.end()) {
        return;
    }
    s.confirmations.push_back(from);
    double c = static_cast<double>(have + 1);
    double frac = std::log(c + 1.0) / std::log(static_cast<double>(s.k) + 1.0);
    auto span = static_cast<double>((s.max - s.min).count());
    auto timeout =
        std::max(s.min, Ms(static_cast<int64_t>(static_cast<double>(s.max.count()) - frac * span)));
    s.deadline = s.start + timeout;
    broadcast(m.name, encode(Suspect{m.incarnation, m.name, from}));
}

void Membership::onDead(const Dead& d) {
    Member* m = find(d.node);
    if (m == nullptr || d.incarnation < m->incarnation) {
        return;
    }
    if (m->state == State::Dead || m->state == State::Left) {
        return;
    }
    if (d.node == opt_.name) {
        if (!left_) {
            refute(d.incarnation);
        }
        return;
    }
    m->incarnation = d.incarnation;
    markDead(*m, d.from);
}

void Membership::markDead(Member& m, const std::string& from) {
    m.state = from == m.name ? State::Left : State::Dead;
    m.stateChange = Clock::now();
    suspicions_.erase(m.name);
    ++stats_.deaths;
    broadcast(m.name, encode(Dead{m.incarnation, m.name, from}));
    log_(m.state == State::Left ? 0 : 1,
         "member " + m.name + (m.state == State::Left ? " left" : " is dead (from " + from + ")"));
    changed();
}

void Membership::refute(uint32_t accused) {
    uint32_t inc = incarnation_ + 1;
    if (accused >= inc) {
        inc = accused + 1;
    }
    incarnation_ = inc;
    Member* self = find(opt_.name);
    if (self != nullptr) {
        self->incarnation = inc;
        self->state = State::Alive;
    }
    ++stats_.refutations;
    if (!opt_.keys.empty()) {
        awarenessDelta(1);  // an accusation without keys is anyone's: it does not count
    }
    broadcast(opt_.name, encode(selfAlive()));
}

uint64_t Membership::broadcast(const std::string& about, Bytes msg) {
    if (!about.empty()) {
        queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                    [&](const Broadcast& b) { return b.about == about; }),
                     queue_.end());
    }
    uint64_t id = ++nextBroadcastId_;
    queue_.push_back(Broadcast{about, std::move(msg), 0, id});
    while (queue_.size() > 1024) {
        queue_.pop_front();
    }
    return id;
}

void Membership::changed() { changedFlag_ = true; }

size_t Membership::aliveCount() const {
    return static_cast<size_t>(std::count_if(members_.begin(), members_.end(), [](const auto& kv) {
        return kv.second.state == State::Alive || kv.second.state == State::Suspect;
    }));
}

int Membership::retransmitLimit() const {
    double n = static_cast<double>(members_.size());
    return opt_.timing.retransmitMult * static_cast<int>(std::ceil(std::log10(n + 1.0)));
}

void Membership::awarenessDelta(int d) {
    stats_.awareness = std::clamp(stats_.awareness + d, 0, opt_.timing.awarenessMax - 1);
}

Ms Membership::probeIntervalNow() const {
    return opt_.timing.probeInterval * (stats_.awareness + 1);
}

// ---- periodic work ----

void Membership::timerLoop() {
    while (running_.load()) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, Ms(10));
        if (!running_.load()) {
            break;
        }
        auto now = Clock::now();
        if (!left_) {
            if (now >= nextProbe_) {
                probeNext(now);
                nextProbe_ = now + probeIntervalNow();
            }
            probeDeadlines(now);
            suspicionTimers(now);
        }
        relayTimers(now);
        if (now >= nextGossip_) {
            gossip(now);
            nextGossip_ = now + opt_.timing.gossipInterval;
        }
        reap(now);
        if (now >= nextPushPull_ && !left_) {
            nextPushPull_ = now + opt_.timing.pushPullInterval;
            std::vector<const Member*> peers;
            for (const auto& [name, m] : members_) {
                if (name != opt_.name && m.state == State::Alive) {
                    peers.push_back(&m);
                }
            }
            if (!peers.empty() && tcpJobs_.load() < kMaxTcpJobs) {
                const Member* peer = peers[rng_() % peers.size()];
                std::string ip = peer->ip;
                uint16_t port = peer->port;
                Bytes request = localState(false);
                ++tcpJobs_;
                std::thread([this, ip, port, request] {
                    StreamMsg reply;
                    std::string error;
                    if (tcpExchange(ip, port, request, true, reply, error) &&
                        reply.type == MsgType::PushPull) {
                        std::lock_guard<std::mutex> l(mu_);
                        ++stats_.pushPulls;
                        mergeRemote(reply.pushPull);
                    }
                    --tcpJobs_;
                }).detach();
            }
        }
        bool notify = changedFlag_;
        changedFlag_ = false;
        lock.unlock();
        if (notify && change_) {
            change_();
        }
    }
}

void Membership::probeNext(Clock::time_point now) {
    if (probing_) {
        return;
    }
    // Round robin over a shuffled list; self, dead and left members are skipped.
    Member* target = nullptr;
    for (size_t tries = 0; tries < members_.size() + 1 && target == nullptr; ++tries) {
        if (probeIndex_ >= probeOrder_.size()) {
            probeOrder_.clear();
            for (const auto& [name, m] : members_) {
                probeOrder_.push_back(name);
            }
            std::shuffle(probeOrder_.begin(), probeOrder_.end(), rng_);
            probeIndex_ = 0;
        }
        if (probeOrder_.empty()) {
            return;
        }
        Member* m = find(probeOrder_[probeIndex_++]);
        if (m != nullptr && m->name != opt_.name &&
            (m->state == State::Alive || m->state == State::Suspect)) {
            target = m;
        }
    }
    if (target == nullptr) {
        return;
    }
    probe_ = Probe{};
    probe_.seq = ++seq_;
    probe_.target = target->name;
    probe_.sent = now;
    probe_.indirectAt = now + opt_.timing.probeTimeout;
    probe_.deadline = now + probeIntervalNow();
    probing_ = true;
    ++stats_.probes;
    Bytes ping = encode(Ping{probe_.seq, target->name, selfAddr_, port_, opt_.name});
    if (target->state == State::Suspect) {
        // Tell a suspect it is suspected, so that it can refute at once.
        Bytes c = compound({ping, encode(Suspect{target->incarnation, target->name, opt_.name})});
        sendUdp(target->ip, target->port, c, pmax(target->vsn) >= 5);
    } else {
        sendUdp(target->ip, target->port, ping, false);
    }
}

void Membership::probeDeadlines(Clock::time_point now) {
    if (!probing_) {
        return;
    }
    Member* target = find(probe_.target);
    if (probe_.acked) {
        probing_ = false;
        awarenessDelta(-1);
        if (target != nullptr) {
            target->answered = true;
        }
        return;
    }
    if (target == nullptr) {
        probing_ = false;
        return;
    }
    if (!probe_.indirectSent && now >= probe_.indirectAt) {
        probe_.indirectSent = true;
        std::vector<Member*> helpers;
        for (auto& [name, m] : members_) {
            if (name != opt_.name && name != probe_.target && m.state == State::Alive) {
                helpers.push_back(&m);
            }
        }
        std::shuffle(helpers.begin(), helpers.end(), rng_);
        if (helpers.size() > opt_.timing.indirectChecks) {
            helpers.resize(opt_.timing.indirectChecks);
        }
        for (Member* h : helpers) {
            IndirectPing ind;
            ind.seqNo = probe_.seq;
            ind.target = target->addr;
            ind.port = target->port;
            ind.node = target->name;
            ind.nack = pmax(h->vsn) >= 4;
            ind.sourceAddr = selfAddr_;
            ind.sourcePort = port_;
            ind.sourceNode = opt_.name;
            // A nack missed from a member never heard from says nothing about this node.
            probe_.expectedNacks += ind.nack && trusted(*h) ? 1 : 0;
            sendUdp(h->ip, h->port, encode(ind), false);
        }
        // The TCP fallback runs beside them (a member whose UDP is filtered stays alive).
        if (pmax(target->vsn) >= 3 && tcpJobs_.load() < kMaxTcpJobs) {
            auto ok = std::make_shared<std::atomic<bool>>(false);
            tcpOk_ = ok;
            std::string ip = target->ip;
            uint16_t port = target->port;
            Bytes ping = encode(Ping{probe_.seq, target->name, selfAddr_, port_, opt_.name});
            uint32_t seq = probe_.seq;
            ++tcpJobs_;
            std::thread([this, ip, port, ping, seq, ok] {
                StreamMsg reply;
                std::string error;
                if (tcpExchange(ip, port, ping, true, reply, error) && reply.type == MsgType::Ack) {
                    (void)seq;
                    ok->store(true);
                }
                --tcpJobs_;
            }).detach();
        }
    }
    if (now < probe_.deadline) {
        return;
    }
    probing_ = false;
    if (tcpOk_ && tcpOk_->load()) {
        ++stats_.tcpFallbackOk;
        tcpOk_.reset();
        target->answered = true;
        return;
    }
    tcpOk_.reset();
    ++stats_.probeFailures;
    // Lifeguard: a failed probe may mean that this node is the slow one. Only when the
    // target is a member that is known to exist: a fake member announced by anyone (no keys)
    // never answers, and must not slow this node's probing down.
    if (trusted(*target)) {
        if (probe_.expectedNacks > 0) {
            awarenessDelta(std::max(
                0, static_cast<int>(probe_.expectedNacks) - static_cast<int>(probe_.nacks)));
        } else {
            awarenessDelta(1);
        }
    }
    if (target->state == State::Alive) {
        suspectMember(*target, opt_.name);
    }
}

void Membership::gossip(Clock::time_point now) {
    if (queue_.empty()) {
        return;
    }
    std::vector<Member*> peers;
    for (auto& [name, m] : members_) {
        if (name == opt_.name || m.state == State::Left) {
            continue;
        }
        if (m.state == State::Dead && now - m.stateChange > opt_.timing.gossipToTheDead) {
            continue;
        }
        peers.push_back(&m);
    }
    std::shuffle(peers.begin(), peers.end(), rng_);
    if (peers.size() > opt_.timing.gossipNodes) {
        peers.resize(opt_.timing.gossipNodes);
    }
    const int limit = retransmitLimit();
    size_t budget = kUdpBuffer - 2 - 5 - (opt_.keys.empty() ? 0 : 29);
    for (Member* peer : peers) {
        std::stable_sort(queue_.begin(), queue_.end(),
                         [](const Broadcast& a, const Broadcast& b) { return a.sends < b.sends; });
        std::vector<Bytes> parts;
        size_t used = 0;
        for (Broadcast& b : queue_) {
            if (used + b.msg.size() + 2 > budget || parts.size() == 255) {
                continue;
            }
            used += b.msg.size() + 2;
            parts.push_back(b.msg);
            ++b.sends;
        }
        queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                    [&](const Broadcast& b) { return b.sends >= limit; }),
                     queue_.end());
        if (parts.empty()) {
            continue;
        }
        Bytes msg = parts.size() == 1 ? parts.front() : compound(parts);
        sendUdp(peer->ip, peer->port, msg, pmax(peer->vsn) >= 5);
    }
}

void Membership::suspicionTimers(Clock::time_point now) {
    for (auto it = suspicions_.begin(); it != suspicions_.end();) {
        if (now < it->second.deadline) {
            ++it;
            continue;
        }
        std::string name = it->first;
        uint32_t inc = it->second.incarnation;
        it = suspicions_.erase(it);
        Member* m = find(name);
        if (m != nullptr && m->state == State::Suspect && m->incarnation == inc) {
            markDead(*m, opt_.name);
        }
    }
}

void Membership::relayTimers(Clock::time_point now) {
    for (auto it = relays_.begin(); it != relays_.end();) {
        if (now < it->second.nackAt) {
            ++it;
            continue;
        }
        if (it->second.nack) {
            sendUdp(it->second.ip, it->second.port, encode(Nack{it->second.origSeq}), false);
        }
        it = relays_.erase(it);
    }
}

void Membership::reap(Clock::time_point now) {
    for (auto it = members_.begin(); it != members_.end();) {
        const Member& m = it->second;
        if (it->first != opt_.name && (m.state == State::Dead || m.state == State::Left) &&
            now - m.stateChange > opt_.timing.gossipToTheDead) {
            it = members_.erase(it);
            changed();
        } else {
            ++it;
        }
    }
}

}  // namespace mp::gossip
