// SPDX-License-Identifier: Apache-2.0
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mp/amqp_connection.hpp>

namespace mp::amqp {

namespace {

constexpr int kWarn = 3;  // MP_LOG_WARN
constexpr int kInfo = 2;  // MP_LOG_INFO

timeval timeout(int ms) {
    timeval tv{};
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

// A TCP connection within `ms`, with the reason when there is none: rabbitmq-c's own connect
// only says "a socket error".
int connectTcp(const std::string& host, uint16_t port, int ms, std::string& why) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) {
        why = "cannot resolve " + host + ": " + ::gai_strerror(rc);
        return -1;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(res, &::freeaddrinfo);
    why = "no address for " + host;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            why = std::string("cannot connect: ") + std::strerror(errno);
            continue;
        }
        int err = 0;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                pollfd p{fd, POLLOUT, 0};
                int n = ::poll(&p, 1, ms);
                socklen_t len = sizeof err;
                if (n == 0) {
                    err = ETIMEDOUT;
                } else if (n < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
                    err = errno;
                }
            }
        }
        if (err == 0) {
            // Left non-blocking: rabbitmq-c (0.9 on) does its I/O with poll() and timeouts.
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        ::close(fd);
        why = std::string("cannot connect: ") + std::strerror(err);
    }
    return -1;
}

}  // namespace

std::string describe(const amqp_rpc_reply_t& r) {
    switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return "";
        case AMQP_RESPONSE_NONE:
            return "no reply from the broker";
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return amqp_error_string2(r.library_error);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
                return "the broker closed the connection: " + std::to_string(m->reply_code) + " " +
                       text(m->reply_text);
            }
            if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
                return "the broker closed the channel: " + std::to_string(m->reply_code) + " " +
                       text(m->reply_text);
            }
            return "the broker answered method " + std::to_string(r.reply.id);
    }
    return "unknown reply";
}

namespace {

// TLS: rabbitmq-c connects itself (its TLS socket takes no descriptor); when that fails, our
// own TCP connect tells whether TCP or TLS is at fault, and why.
bool openTls(amqp_connection_state_t state, const Endpoint& e, std::string& why) {
    static const int init = amqp_initialize_ssl_library();  // once, thread-safe
    (void)init;
    amqp_socket_t* sock = amqp_ssl_socket_new(state);
    if (sock == nullptr) {
        why = "cannot make a TLS socket";
        return false;
    }
    const std::string ca = e.caFile.empty() ? "/etc/ssl/certs/ca-certificates.crt" : e.caFile;
    if (amqp_ssl_socket_set_cacert(sock, ca.c_str()) != AMQP_STATUS_OK) {
        why = "cannot load the CA certificates of " + ca;
        return false;
    }
    if (!e.certFile.empty() &&
        amqp_ssl_socket_set_key(sock, e.certFile.c_str(), e.keyFile.c_str()) != AMQP_STATUS_OK) {
        why = "cannot load the client certificate " + e.certFile + " with its key";
        return false;
    }
    amqp_ssl_socket_set_verify_peer(sock, 1);
    amqp_ssl_socket_set_verify_hostname(sock, 1);
    amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST);
    timeval tv = timeout(e.connectTimeoutMs);
    int st = amqp_socket_open_noblock(sock, e.host.c_str(), e.port, &tv);
    if (st == AMQP_STATUS_OK) {
        return true;
    }
    int fd = connectTcp(e.host, e.port, e.connectTimeoutMs, why);
    if (fd >= 0) {
        ::close(fd);
        why = std::string("TLS handshake failed: ") + amqp_error_string2(st);
    }
    return false;
}

}  // namespace

bool Connection::open(const Endpoint& e, std::string& why) {
    close(false);
    state_ = amqp_new_connection();
    healthy_ = true;
    if (e.tls) {
        if (!openTls(state_, e, why)) {
            return false;
        }
    } else {
        amqp_socket_t* sock = amqp_tcp_socket_new(state_);
        if (sock == nullptr) {
            why = "cannot make a socket";
            return false;
        }
        int fd = connectTcp(e.host, e.port, e.connectTimeoutMs, why);
        if (fd < 0) {
            return false;
        }
        amqp_tcp_socket_set_sockfd(sock, fd);  // the connection owns it from here
    }
    timeval tv = timeout(e.connectTimeoutMs);
    amqp_set_handshake_timeout(state_, &tv);
    amqp_set_rpc_timeout(state_, &tv);
    amqp_rpc_reply_t r = amqp_login(state_, e.vhost.c_str(), 0, 131072, e.heartbeatS,
                                    AMQP_SASL_METHOD_PLAIN, e.user.c_str(), e.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        why = "login as " + e.user + " to vhost " + e.vhost + " refused: " + describe(r);
        healthy_ = false;
        return false;
    }
    loggedIn_ = true;  // from here on the connection is closed politely
    amqp_channel_open(state_, kChannel);
    if (why = rpcError(); !why.empty()) {
        why = "cannot open a channel: " + why;
        return false;
    }
    return true;
}

std::string Connection::rpcError() {
    amqp_rpc_reply_t r = amqp_get_rpc_reply(state_);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        return "";
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ||
        (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
         r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)) {
        healthy_ = false;
    }
    return describe(r);
}

void Connection::close(bool channelToo) {
    if (state_ == nullptr) {
        return;
    }
    if (loggedIn_ && healthy_) {  // the socket works: say goodbye (the channel may be gone)
        if (channelToo) {
            amqp_channel_close(state_, kChannel, AMQP_REPLY_SUCCESS);
        }
        amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(state_);
    state_ = nullptr;
    loggedIn_ = false;
}

std::chrono::milliseconds Retry::failed(const std::string& why) {
    ++failedAttempts_;
    if (why != lastProblem_) {
        log_(kWarn, "amqp " + what_ + ": " + why + "; retrying");
        lastProblem_ = why;
    }
    std::chrono::milliseconds wait(backoffMs_);
    backoffMs_ = std::min(backoffMs_ * 2, maxMs_);
    return wait;
}

void Retry::lost(const std::string& why) {
    std::string line = "connection lost: " + why;
    if (line != lastProblem_) {
        log_(kWarn, "amqp " + what_ + ": " + line + "; retrying");
        lastProblem_ = line;
    }
}

bool Retry::connected() {
    bool again = everConnected_;
    if (everConnected_ || failedAttempts_ != 0) {
        log_(kInfo, "amqp: connected to " + what_ +
                        (failedAttempts_ != 0
                             ? " after " + std::to_string(failedAttempts_) + " failed attempts"
                             : std::string()));
    }
    everConnected_ = true;
    failedAttempts_ = 0;
    lastProblem_.clear();
    backoffMs_ = minMs_;
    return again;
}

}  // namespace mp::amqp
