// SPDX-License-Identifier: Apache-2.0
// Internal to Membership (membership.hpp): its bounds and the socket helpers shared by its
// lifecycle (membership.cpp), its transport (transport.cpp) and its SWIM state (swim.cpp).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "membership.hpp"

namespace mp::gossip::member {

inline constexpr size_t kUdpBuffer = 1400;           // what one gossip datagram may carry
inline constexpr size_t kMaxStream = 8 << 20;        // largest TCP message accepted
inline constexpr size_t kMaxDecompressed = 1 << 20;  // largest UDP message after LZW
inline constexpr int kMaxDepth = 4;                  // nesting of compound/compress/crc
inline constexpr size_t kMaxRelays = 1024;           // indirect pings run for others at once
inline constexpr int kMaxTcpJobs = 16;               // outgoing TCP exchanges at once
inline constexpr size_t kMaxTcpServed = 32;          // incoming TCP connections served at once
inline constexpr size_t kMaxTcpPerSource = 8;        // of them from one address
inline constexpr size_t kMaxTcpBuffered = 16
                                          << 20;  // bytes all served connections may hold at once
inline constexpr Ms kSlice{100};                  // how often blocking waits look at cancellation
inline constexpr Ms kLeaveWait{750};              // each of a leave's two messages, at most

inline bool ipBytes(const std::string& ip, Bytes& out) {
    in_addr a{};
    if (inet_pton(AF_INET, ip.c_str(), &a) != 1) {
        return false;
    }
    out.assign(reinterpret_cast<uint8_t*>(&a), reinterpret_cast<uint8_t*>(&a) + 4);
    return true;
}

inline std::string ipString(const Bytes& addr) {
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

inline sockaddr_in sockAddr(const std::string& ip, uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &sa.sin_addr);
    return sa;
}

inline uint8_t pmax(const Bytes& vsn) { return vsn.size() == 6 ? vsn[1] : 0; }

// Sends all of `b` on a non-blocking socket before `deadline`, unless `cancelled` turns true.
inline bool sendAll(int fd, const Bytes& b, Clock::time_point deadline,
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
inline Parse readMessage(int fd, const Keyring* keys, Clock::time_point deadline, size_t maxBytes,
                         const std::atomic<bool>& cancelled, std::atomic<size_t>* budget,
                         StreamMsg& out, std::string& error) {
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

}  // namespace mp::gossip::member
