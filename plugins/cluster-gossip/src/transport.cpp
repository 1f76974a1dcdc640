// SPDX-License-Identifier: Apache-2.0
// Membership's transport: the UDP socket (packets in, each message of a compound, encrypted or
// compressed envelope dispatched), UDP out, the TCP listener and the connections it serves
// (push-pull, fallback pings, user messages), bounded in number, per source and in bytes.
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

#include "membership_internal.hpp"

namespace mp::gossip {

using namespace member;  // its bounds and socket helpers (membership_internal.hpp)

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
            r.nackAt = now() + opt_.timing.probeTimeout;
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
    if (opt_.sendUdpHook) {
        opt_.sendUdpHook(ip, port, out);
        ++stats_.udpOut;
        return;
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
    if (!sourceIp_.empty()) {
        sockaddr_in src = sockAddr(sourceIp_, 0);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
            // Not fatal: the kernel then picks the source address, as memberlist always lets it.
        }
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

}  // namespace mp::gossip
