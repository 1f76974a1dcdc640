// SPDX-License-Identifier: Apache-2.0
#include "mp/dial.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace mp::net {

int dial(const std::string& host, uint16_t port, int timeoutMs, std::string& why) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
        why = std::string("cannot resolve the host: ") + ::gai_strerror(rc);
        return -1;
    }
    why = "no address";
    int connected = -1;
    for (addrinfo* ai = res; ai != nullptr && connected < 0; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            why = std::strerror(errno);
            continue;
        }
        int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            do {
                rc = ::poll(&p, 1, std::max(timeoutMs, 0));
            } while (rc < 0 && errno == EINTR);
            int err = 0;
            socklen_t len = sizeof err;
            if (rc == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
                rc = 0;
            } else {
                why = rc == 0 ? "timed out after " + std::to_string(timeoutMs) + " ms"
                              : std::strerror(err != 0 ? err : errno);
                rc = -1;
            }
        } else if (rc != 0) {
            why = std::strerror(errno);
        }
        if (rc == 0) {
            connected = fd;
        } else {
            ::close(fd);
        }
    }
    ::freeaddrinfo(res);
    if (connected >= 0) {
        int on = 1;
        ::setsockopt(connected, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
    return connected;
}

}  // namespace mp::net
