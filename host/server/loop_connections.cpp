// SPDX-License-Identifier: Apache-2.0
// The event loop's connections: accepting (with the connection caps and the reserve), idle
// eviction, epoll interest, closing, the bytes held against the server's budget, and the
// transport under HTTP: plain TCP or TLS (handshake, reads, writes, half-close).
#include <Poco/Net/SocketAddress.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "server/http_util.hpp"
#include "server/server_impl.hpp"

namespace mp::host {

// ---- connections ---------------------------------------------------------------------------

void Loop::acceptAll() {
    while (true) {
        sockaddr_storage sa{};
        socklen_t len = sizeof sa;
        int fd = ::accept4(s_.listenFd, reinterpret_cast<sockaddr*>(&sa), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && spareFd_ >= 0) {
                // Out of descriptors: free an idle connection's, and take this one off the
                // queue with the spare descriptor (else it stays readable, and the loop spins).
                evictIdle();
                ::close(spareFd_);
                int gone = ::accept4(s_.listenFd, nullptr, nullptr, SOCK_CLOEXEC);
                if (gone >= 0) {
                    HttpServer::Impl::add(s_.refused);
                    ::close(gone);
                }
                spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            return;
        }
        if (stopped_) {
            ::close(fd);
            continue;
        }
        Poco::Net::SocketAddress addr(reinterpret_cast<sockaddr*>(&sa), len);
        std::string ip = addr.host().toString();
        if (s_.conns.size() >= s_.options.maxConnections) {
            evictIdle();
        }
        if (s_.conns.size() >= s_.options.maxConnections ||
            s_.perClient[ip] >= s_.options.maxConnectionsPerClient) {
            // A clear refusal, best effort on a fresh socket, then the door shuts.
            HttpServer::Impl::add(s_.refused);
            std::string body =
                errorJson(s_.conns.size() >= s_.options.maxConnections
                              ? "too many connections: try again later"
                              : "too many connections from " + ip + ": try again later");
            std::string resp =
                "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                "Retry-After: 1\r\nContent-Type: application/json\r\n"
                "Content-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body;
            (void)::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            ::close(fd);
            if (s_.perClient[ip] == 0) {
                s_.perClient.erase(ip);
            }
            continue;
        }
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto c = std::make_shared<Conn>();
        c->fd = fd;
        c->id = s_.nextId++;
        c->ip = ip;
        c->remote = addr.toString();
        c->reserved = s_.conns.size() + s_.options.reservedConnections >= s_.options.maxConnections;
        c->deadline = Clock::now() + s_.options.headerTimeout;
        if (s_.tls != nullptr) {
            c->ssl = SSL_new(s_.tls);
            if (c->ssl == nullptr || SSL_set_fd(c->ssl, fd) != 1) {
                if (c->ssl != nullptr) {
                    SSL_free(c->ssl);
                }
                ::close(fd);
                continue;
            }
            SSL_set_accept_state(c->ssl);
        }
        s_.perClient[ip] += 1;
        s_.conns[fd] = c;
        s_.fdById[c->id] = fd;
        s_.connections->value.store(static_cast<int64_t>(s_.conns.size()));
        c->events = EPOLLIN;
        epoll_event ev{};
        ev.events = c->events;
        ev.data.u64 = c->id;
        ::epoll_ctl(s_.epollFd, EPOLL_CTL_ADD, fd, &ev);
    }
}

// Closes the longest-idle keep-alive connection (between requests, nothing buffered).
void Loop::evictIdle() {
    std::shared_ptr<Conn> oldest;
    for (auto& [fd, c] : s_.conns) {
        if (c->st == Conn::St::Head && !c->sawBytes && c->in.empty() && c->out.empty() &&
            (!oldest || c->deadline < oldest->deadline)) {
            oldest = c;
        }
    }
    if (oldest) {
        close(*oldest);
    }
}

void Loop::interest(Conn& c) {
    if (c.fd < 0) {
        return;
    }
    uint32_t want = 0;
    bool readable = c.st == Conn::St::Head || c.st == Conn::St::Body || c.st == Conn::St::Closing ||
                    (c.st == Conn::St::Ws && !c.closeSent && !sessionFull(c));
    if (c.st == Conn::St::Head && !c.out.empty()) {
        readable = false;  // one response at a time: pipelined requests wait in the kernel
    }
    if (c.ssl != nullptr && !c.tlsReady) {
        readable = true;  // the handshake first
    }
    if (readable) {
        want |= EPOLLIN;
    }
    if (!c.out.empty() || c.tlsWantWrite) {
        want |= EPOLLOUT;
    }
    if ((want & EPOLLIN) != 0 && c.ssl != nullptr && c.tlsReady && SSL_pending(c.ssl) > 0 &&
        (c.events & EPOLLIN) == 0) {
        tlsPending_.push_back(c.id);  // readable again with bytes OpenSSL already holds
    }
    if (want != c.events) {
        c.events = want;
        epoll_event ev{};
        ev.events = want;
        ev.data.u64 = c.id;
        ::epoll_ctl(s_.epollFd, EPOLL_CTL_MOD, c.fd, &ev);
    }
}

bool Loop::sessionFull(const Conn& c) {
    if (!c.session) {
        return false;
    }
    std::lock_guard<std::mutex> lock(c.session->m);
    return c.session->inboundBytes > c.maxMessage;
}

void Loop::close(Conn& c) {
    if (c.fd < 0) {
        return;
    }
    ::epoll_ctl(s_.epollFd, EPOLL_CTL_DEL, c.fd, nullptr);
    if (c.ssl != nullptr) {
        SSL_free(c.ssl);
        c.ssl = nullptr;
    }
    ::close(c.fd);
    s_.buffered.fetch_sub(static_cast<int64_t>(c.heldIn + c.out.size()));
    c.out.clear();
    c.heldIn = 0;
    if (auto pc = s_.perClient.find(c.ip); pc != s_.perClient.end() && --pc->second == 0) {
        s_.perClient.erase(pc);
    }
    s_.fdById.erase(c.id);
    int fd = c.fd;
    c.fd = -1;
    if (c.session) {
        endSession(c);
    }
    s_.conns.erase(fd);  // may free c
    s_.connections->value.store(static_cast<int64_t>(s_.conns.size()));
}

// Input is held by the server: every byte is counted against the budget.
bool Loop::hold(Conn& c, size_t more) {
    if (static_cast<size_t>(s_.buffered.load()) + more > s_.options.maxBufferedBytes) {
        HttpServer::Impl::add(s_.memoryRefused);
        return false;
    }
    s_.buffered.fetch_add(static_cast<int64_t>(more));
    c.heldIn += more;
    return true;
}

void Loop::release(Conn& c, size_t n) {
    n = std::min(n, c.heldIn);
    s_.buffered.fetch_sub(static_cast<int64_t>(n));
    c.heldIn -= n;
}

// How much input this connection may hold in its state.
size_t Loop::inputLimit(const Conn& c) const {
    switch (c.st) {
        case Conn::St::Head:
            return s_.options.maxHeadBytes + 1;
        case Conn::St::Body:
            return 64 * 1024;  // the body itself is counted as it is decoded
        case Conn::St::Ws:
            return c.maxMessage + 14;
        default:
            return 64 * 1024;
    }
}

// ---- the transport: plain TCP or TLS -------------------------------------------------------

// Completes the TLS handshake; false while it is not done (or when it failed: closed).
bool Loop::handshake(Conn& c) {
    if (c.ssl == nullptr || c.tlsReady) {
        return true;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
        c.tlsReady = true;
        c.tlsWantWrite = false;
        return true;
    }
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c.tlsWantWrite = e == SSL_ERROR_WANT_WRITE;
        interest(c);
        return false;
    }
    HttpServer::Impl::add(s_.tlsFailures);
    ERR_clear_error();
    close(c);
    return false;
}

// Bytes read (>0), 0 at the end of the stream, -1 when nothing is there now, -2 on error.
ssize_t Loop::readSome(Conn& c, char* buf, size_t n) {
    if (c.ssl == nullptr) {
        ssize_t r = ::recv(c.fd, buf, n, 0);
        if (r < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
        }
        return r;
    }
    ERR_clear_error();
    int r = SSL_read(c.ssl, buf, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
    if (r > 0) {
        return r;
    }
    int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        return -1;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c.tlsWantWrite = true;
        return -1;
    }
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -2;
}

// Bytes written (>0), -1 when the socket is full, -2 on error.
ssize_t Loop::writeSome(Conn& c, const char* p, size_t n) {
    if (c.ssl == nullptr) {
        ssize_t r = ::send(c.fd, p, n, MSG_NOSIGNAL);
        if (r < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
        }
        return r;
    }
    ERR_clear_error();
    int r = SSL_write(c.ssl, p, static_cast<int>(std::min<size_t>(n, 1 << 20)));
    if (r > 0) {
        return r;
    }
    int e = SSL_get_error(c.ssl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? -1 : -2;
}

// Our side is done sending: a TLS close_notify first, then the TCP half-close.
void Loop::shutWrite(Conn& c) {
    if (c.ssl != nullptr && c.tlsReady) {
        ERR_clear_error();
        (void)SSL_shutdown(c.ssl);
        ERR_clear_error();
    }
    ::shutdown(c.fd, SHUT_WR);
}

void Loop::onReadable(Conn& c) {
    char buf[65536];
    c.tlsWantWrite = false;
    if (!handshake(c)) {
        return;
    }
    while (c.fd >= 0) {
        if (c.st == Conn::St::Busy) {
            return;
        }
        // Lingering, what arrives is dropped: read it whatever `in` still holds (else the
        // socket stays readable, unread, and the loop spins on it).
        size_t room = c.st == Conn::St::Closing     ? sizeof buf
                      : inputLimit(c) > c.in.size() ? inputLimit(c) - c.in.size()
                                                    : 0;
        if (room == 0) {
            break;
        }
        ssize_t n = readSome(c, buf, std::min(room, sizeof buf));
        if (n == 0 || n == -2) {
            close(c);  // the peer is gone (a websocket's on_close follows)
            return;
        }
        if (n < 0) {
            break;
        }
        if (c.st == Conn::St::Closing) {
            continue;  // lingering: what the client still sends is discarded
        }
        if (!hold(c, static_cast<size_t>(n))) {
            refuseMemory(c);
            return;
        }
        if (c.st == Conn::St::Head && !c.sawBytes) {
            c.deadline = Clock::now() + s_.options.headerTimeout;  // the head has begun
        }
        c.in.append(buf, static_cast<size_t>(n));
        c.sawBytes = true;
        if (c.ssl == nullptr && static_cast<size_t>(n) < sizeof buf) {
            break;  // the kernel had no more (TLS reads a record at a time: read on)
        }
    }
    advance(c);
    // Decrypted bytes OpenSSL holds do not make the socket readable: come back for them.
    if (c.fd >= 0 && c.ssl != nullptr && SSL_pending(c.ssl) > 0) {
        tlsPending_.push_back(c.id);
    }
}

void Loop::refuseMemory(Conn& c) {
    if (c.st == Conn::St::Ws) {
        sendClose(c, 1008, "server memory budget reached");
    } else {
        respondError(c, 503, "server busy: memory budget for clients reached", true);
    }
}

void Loop::consume(Conn& c, size_t n) {
    c.in.erase(0, n);
    release(c, n);
}

}  // namespace mp::host
