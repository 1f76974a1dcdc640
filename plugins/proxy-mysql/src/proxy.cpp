// SPDX-License-Identifier: Apache-2.0
#include "proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mp/hostport.hpp>
#include <mp/sdk.hpp>
#include <unordered_map>

namespace mp::proxy {

namespace {
// epoll tags: the wake-up eventfd, the listeners (kListen + role), and sessions: id << 1 | side
// (ids from 2: their tags never meet the others).
constexpr uint64_t kWake = 0;
constexpr uint64_t kListen = 1;
constexpr uint64_t kFirstSession = 2;

int64_t nowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// An address literal and port into a sockaddr; false when `host` is not one.
bool sockaddrOf(const std::string& host, uint16_t port, sockaddr_storage& ss, socklen_t& len) {
    std::memset(&ss, 0, sizeof ss);
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof(sockaddr_in);
        return true;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

void noDelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int listenOn(const std::string& spec, uint16_t& port) {
    auto hp = net::parseHostPort(spec, net::HostKind::Ip);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (!hp || !sockaddrOf(hp->host, hp->port, ss, len)) {
        throw Error("'" + spec + "' is not address:port (an IP address literal and a port)");
    }
    int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw Error("socket: " + std::string(std::strerror(errno)));
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 1024) != 0) {
        int e = errno;
        ::close(fd);
        throw Error("cannot listen on " + spec + ": " + std::strerror(e));
    }
    port = hp->port;
    return fd;
}
}  // namespace

// One client and its target connection, with a bounded buffer per direction.
struct Proxy::Session {
    struct Buffer {
        std::vector<char> data;
        size_t start = 0, end = 0;
        size_t pending() const { return end - start; }
        size_t room() const { return data.size() - end + start; }
    };
    uint64_t id = 0;
    int role = 0;
    int cfd = -1, sfd = -1;
    Target target;
    std::shared_ptr<TargetStats> ts;
    bool connecting = false;
    bool counted = false;  // counted open on its target
    int64_t deadline = 0;
    uint64_t base = 0;  // round robin start
    size_t attempt = 0;
    Buffer c2s, s2c;
    bool clientEof = false, serverEof = false;    // read EOF from that side
    bool clientDead = false, serverDead = false;  // that side can take no more bytes
    bool serverShut = false, clientShut = false;  // our write side shut down
    uint32_t cEvents = 0, sEvents = 0;            // registered with epoll
};

struct Proxy::Loop {
    Proxy& p;
    int ep = -1;
    int wake = -1;
    std::thread thread;
    std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions;
    uint64_t nextId = kFirstSession;

    explicit Loop(Proxy& proxy) : p(proxy) {
        ep = ::epoll_create1(EPOLL_CLOEXEC);
        wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ep < 0 || wake < 0) {
            throw Error("epoll: " + std::string(std::strerror(errno)));
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kWake;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
        for (int role = 0; role < 2; ++role) {
            if (p.listeners_[role] >= 0) {
                epoll_event lev{};
                lev.events = EPOLLIN | EPOLLEXCLUSIVE;
                lev.data.u64 = kListen + static_cast<uint64_t>(role);
                ::epoll_ctl(ep, EPOLL_CTL_ADD, p.listeners_[role], &lev);
            }
        }
    }
    ~Loop() {
        for (auto& [id, s] : sessions) {
            closeFds(*s);
        }
        ::close(ep);
        ::close(wake);
    }

    void run() {
        epoll_event events[256];
        int64_t lastTick = nowMs();
        while (!p.stopping_) {
            int n = ::epoll_wait(ep, events, 256, 100);
            for (int i = 0; i < n; ++i) {
                const uint64_t tag = events[i].data.u64;
                if (tag == kWake) {
                    uint64_t v = 0;
                    [[maybe_unused]] auto r = ::read(wake, &v, sizeof v);
                } else if (tag < kListen + 2) {
                    accept(static_cast<int>(tag - kListen));
                } else {
                    auto it = sessions.find(tag >> 1);
                    if (it != sessions.end()) {
                        handle(*it->second, (tag & 1) != 0, events[i].events);
                    }
                }
            }
            const int64_t now = nowMs();
            if (now - lastTick >= 100) {
                lastTick = now;
                tick(now);
            }
        }
    }

    void accept(int role) {
        for (;;) {
            int fd = ::accept4(p.listeners_[role], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                return;  // EAGAIN (another loop took it), or an error on one client
            }
            // The buffers are allocated whole when a connection opens: the budget counts them.
            const uint64_t open = p.open_.load();
            if (open >= p.o_.maxConnections ||
                (open + 1) * 2 * p.o_.bufferBytes > p.o_.maxMemoryBytes) {
                ++p.full_;
                ::close(fd);
                continue;
            }
            noDelay(fd);
            auto s = std::make_unique<Session>();
            s->id = nextId++;
            s->role = role;
            s->cfd = fd;
            s->c2s.data.resize(p.o_.bufferBytes);
            s->s2c.data.resize(p.o_.bufferBytes);
            s->base = p.rr_.fetch_add(1);
            ++p.connections_;
            ++p.open_;
            Session& ref = *s;
            sessions.emplace(s->id, std::move(s));
            if (!connect(ref)) {
                ++p.refused_;
                close(ref);
                continue;
            }
            update(ref);
        }
    }

    // A non-blocking connect to the next target of the session's role. False when there is
    // none left to try.
    bool connect(Session& s) {
        for (;;) {
            auto t = p.pick(s.role, s.base, s.attempt);
            if (!t) {
                return false;
            }
            ++s.attempt;
            sockaddr_storage ss{};
            socklen_t len = 0;
            if (!sockaddrOf(t->host, t->port, ss, len)) {
                continue;
            }
            int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                return false;
            }
            noDelay(fd);
            int r = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
            s.target = *t;
            s.ts = p.statsOf(*t);
            if (r != 0 && errno != EINPROGRESS) {
                ::close(fd);
                ++s.ts->failed;
                continue;
            }
            s.sfd = fd;
            s.sEvents = 0;
            s.connecting = true;
            s.deadline = nowMs() + p.o_.connectTimeoutMs;
            epoll_event ev{};
            ev.events = EPOLLOUT;
            ev.data.u64 = (s.id << 1) | 1;
            ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            s.sEvents = EPOLLOUT;
            return true;
        }
    }

    // The target did not answer (refused, timed out): the next one, else the client goes.
    void connectFailed(Session& s) {
        ++s.ts->failed;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, s.sfd, nullptr);
        ::close(s.sfd);
        s.sfd = -1;
        s.connecting = false;
        if (!connect(s)) {
            ++p.connectFailed_;
            if (!s.ts->warned.exchange(true)) {  // once until it answers again
                p.log_(MP_LOG_WARN, std::string(s.role == 0 ? "master" : "slave") +
                                        " connections: cannot reach " + s.target.key() +
                                        " (clients closed, counted in connect_failed_total)");
            }
            close(s);
            return;
        }
        update(s);
    }

    void handle(Session& s, bool server, uint32_t ev) {
        if (server && s.connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(s.sfd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0 || (ev & (EPOLLERR | EPOLLHUP)) != 0) {
                connectFailed(s);
                return;
            }
            s.connecting = false;
            s.counted = true;
            ++s.ts->open;
            ++s.ts->total;
            if (s.ts->warned.exchange(false)) {
                p.log_(MP_LOG_INFO, s.target.key() + " answers again");
            }
        }
        if ((ev & EPOLLERR) != 0) {
            close(s);
            return;
        }
        if ((ev & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) != 0) {
            if (!readSide(s, server)) {
                close(s);
                return;
            }
            if ((ev & EPOLLHUP) != 0) {
                (server ? s.serverDead : s.clientDead) = true;
            }
        }
        pump(s);
    }

    // Reads what fits in the buffer towards the other side. False on a read error.
    bool readSide(Session& s, bool server) {
        Session::Buffer& b = server ? s.s2c : s.c2s;
        bool& eof = server ? s.serverEof : s.clientEof;
        const int fd = server ? s.sfd : s.cfd;
        while (!eof) {
            if (b.end == b.data.size() && b.start > 0) {
                std::memmove(b.data.data(), b.data.data() + b.start, b.pending());
                b.end -= b.start;
                b.start = 0;
            }
            if (b.end == b.data.size()) {
                return true;  // full: wait until the other side took some
            }
            const size_t want = b.data.size() - b.end;
            ssize_t n = ::recv(fd, b.data.data() + b.end, want, 0);
            if (n > 0) {
                b.end += static_cast<size_t>(n);
                if (static_cast<size_t>(n) < want) {
                    return true;  // all there was (epoll is level-triggered: more wakes us)
                }
                continue;
            }
            if (n == 0) {
                eof = true;
                return true;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true;
            }
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        return true;
    }

    // Writes what is pending. False when the peer cannot take it (gone).
    bool flush(Session& s, bool toServer) {
        Session::Buffer& b = toServer ? s.c2s : s.s2c;
        const int fd = toServer ? s.sfd : s.cfd;
        while (b.pending() > 0) {
            ssize_t n = ::send(fd, b.data.data() + b.start, b.pending(), MSG_NOSIGNAL);
            if (n > 0) {
                b.start += static_cast<size_t>(n);
                const auto un = static_cast<uint64_t>(n);
                if (toServer) {
                    p.toServer_ += un;
                    s.ts->toServer += un;
                } else {
                    p.toClient_ += un;
                    s.ts->toClient += un;
                }
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return false;
        }
        if (b.pending() == 0) {
            b.start = b.end = 0;
        }
        return true;
    }

    void pump(Session& s) {
        if (!s.connecting) {
            if (!s.serverDead && !flush(s, true)) {
                s.serverDead = true;
            }
            if (s.clientEof && s.c2s.pending() == 0 && !s.serverShut && !s.serverDead) {
                ::shutdown(s.sfd, SHUT_WR);
                s.serverShut = true;
            }
        }
        if (!s.clientDead && !flush(s, false)) {
            s.clientDead = true;
        }
        if (s.serverEof && s.s2c.pending() == 0 && !s.clientShut && !s.clientDead) {
            ::shutdown(s.cfd, SHUT_WR);
            s.clientShut = true;
        }
        // Each direction ends when its source is done and its bytes are out, or when its
        // destination is gone (what is left cannot be delivered).
        const bool c2sDone = s.serverDead || (s.clientEof && s.c2s.pending() == 0);
        const bool s2cDone = s.clientDead || (s.serverEof && s.s2c.pending() == 0);
        if ((c2sDone && s2cDone) || (s.clientDead && s.connecting)) {
            close(s);
            return;
        }
        update(s);
    }

    void set(int fd, uint32_t want, uint32_t& have, uint64_t tag) {
        if (fd < 0 || want == have) {
            return;
        }
        epoll_event ev{};
        ev.events = want;
        ev.data.u64 = tag;
        ::epoll_ctl(ep,
                    have == 0 && want != 0 ? EPOLL_CTL_ADD
                    : want == 0            ? EPOLL_CTL_DEL
                                           : EPOLL_CTL_MOD,
                    fd, &ev);
        have = want;
    }

    // What each side waits for: to read while it has not ended and there is room towards the
    // other side (also after a hang-up: what it sent before is still delivered), to write while
    // bytes are pending for it and it can take them.
    void update(Session& s) {
        constexpr uint32_t kIn = EPOLLIN | EPOLLRDHUP;
        constexpr uint32_t kOut = EPOLLOUT;
        uint32_t c = (!s.clientEof && s.c2s.room() > 0) ? kIn : 0u;
        c |= (!s.clientDead && s.s2c.pending() > 0) ? kOut : 0u;
        uint32_t sv = kOut;
        if (!s.connecting) {
            sv = (!s.serverEof && s.s2c.room() > 0) ? kIn : 0u;
            sv |= (!s.serverDead && s.c2s.pending() > 0) ? kOut : 0u;
        }
        set(s.cfd, c, s.cEvents, s.id << 1);
        set(s.sfd, sv, s.sEvents, (s.id << 1) | 1);
    }

    void closeFds(Session& s) {
        if (s.cfd >= 0) {
            ::close(s.cfd);
            s.cfd = -1;
        }
        if (s.sfd >= 0) {
            ::close(s.sfd);
            s.sfd = -1;
        }
        if (s.counted) {
            --s.ts->open;
            s.counted = false;
        }
    }

    void close(Session& s) {
        closeFds(s);  // closing removes them from the epoll set
        --p.open_;
        sessions.erase(s.id);
    }

    void tick(int64_t now) {
        std::vector<Session*> late;
        for (auto& [id, s] : sessions) {
            if (s->connecting && now >= s->deadline) {
                late.push_back(s.get());
            }
        }
        for (Session* s : late) {
            connectFailed(*s);
        }
        if (p.o_.closeAfterSwitchMs <= 0 || p.switchGen_.load() == 0 ||
            now - p.switchAtMs_.load() < p.o_.closeAfterSwitchMs) {
            return;
        }
        auto topo = p.current();
        std::vector<Session*> gone;
        for (auto& [id, s] : sessions) {
            if (s->connecting) {
                continue;
            }
            const auto& list = s->role == 0 ? topo->master : topo->slave;
            bool still = false;
            for (const auto& t : list) {
                still = still || t == s->target;
            }
            if (!still && s->role == 1 && p.o_.slaveFallback && topo->slave.empty()) {
                for (const auto& t : topo->master) {
                    still = still || t == s->target;
                }
            }
            if (!still) {
                gone.push_back(s.get());
            }
        }
        for (Session* s : gone) {
            ++p.closedAfterSwitch_;
            close(*s);
        }
    }
};

Proxy::Proxy(Options o, Log log)
    : o_(std::move(o)), log_(std::move(log)), targets_(std::make_shared<Topology>()) {
    if (o_.threads < 1) {
        o_.threads = 1;
    }
}

Proxy::~Proxy() { stop(); }

void Proxy::start() {
    const std::string* specs[2] = {&o_.masterListen, &o_.slaveListen};
    for (int role = 0; role < 2; ++role) {
        if (!specs[role]->empty()) {
            listeners_[role] = listenOn(*specs[role], ports_[role]);
        }
    }
    for (int i = 0; i < o_.threads; ++i) {
        loops_.push_back(std::make_unique<Loop>(*this));
    }
    for (auto& l : loops_) {
        Loop* loop = l.get();
        loop->thread = std::thread([loop] { loop->run(); });
    }
}

void Proxy::stop() {
    if (stopping_.exchange(true)) {
        return;
    }
    for (auto& l : loops_) {
        uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(l->wake, &one, sizeof one);
    }
    for (auto& l : loops_) {
        if (l->thread.joinable()) {
            l->thread.join();
        }
    }
    loops_.clear();
    for (int& fd : listeners_) {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }
}

std::shared_ptr<const Topology> Proxy::current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return targets_;
}

void Proxy::setTargets(const Topology& t) {
    std::lock_guard<std::mutex> lock(mu_);
    if (*targets_ == t) {
        return;
    }
    targets_ = std::make_shared<const Topology>(t);
    switchAtMs_ = nowMs();
    ++switchGen_;
}

Topology Proxy::targets() const { return *current(); }

std::shared_ptr<Proxy::TargetStats> Proxy::statsOf(const Target& t) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = perTarget_[t.key()];
    if (!slot) {
        slot = std::make_shared<TargetStats>();
    }
    return slot;
}

std::optional<Target> Proxy::pick(int role, uint64_t base, size_t attempt) {
    auto topo = current();
    const std::vector<Target>* list = role == 0 ? &topo->master : &topo->slave;
    if (role == 1 && list->empty() && o_.slaveFallback) {
        list = &topo->master;
    }
    // The master: the first container (then the next, if the feed names several); slaves:
    // round robin from `base`, trying one more when the first does not answer.
    const size_t tries = role == 0 ? list->size() : std::min<size_t>(list->size(), 2);
    if (attempt >= tries) {
        return std::nullopt;
    }
    const size_t at = role == 0 ? attempt : (base + attempt) % list->size();
    return (*list)[at];
}

Stats Proxy::stats() const {
    Stats s;
    s.connections = connections_;
    s.open = open_;
    s.refused = refused_;
    s.connectFailed = connectFailed_;
    s.bytesToServer = toServer_;
    s.bytesToClient = toClient_;
    s.closedAfterSwitch = closedAfterSwitch_;
    s.full = full_;
    return s;
}

std::string Proxy::targetsJson() const {
    auto topo = current();
    auto list = [](const std::vector<Target>& v) {
        std::string out = "[";
        for (size_t i = 0; i < v.size(); ++i) {
            out += (i == 0 ? "" : ",") + jsonString(v[i].key());
        }
        return out + "]";
    };
    std::string out =
        "{\"master\":" + list(topo->master) + ",\"slave\":" + list(topo->slave) + ",\"targets\":{";
    std::lock_guard<std::mutex> lock(mu_);
    bool first = true;
    for (const auto& [key, t] : perTarget_) {
        out += (first ? "" : ",") + jsonString(key) + ":{\"open\":" + std::to_string(t->open) +
               ",\"total\":" + std::to_string(t->total) +
               ",\"bytes_to_server\":" + std::to_string(t->toServer) +
               ",\"bytes_to_client\":" + std::to_string(t->toClient) +
               ",\"connect_failed\":" + std::to_string(t->failed) + "}";
        first = false;
    }
    return out + "}}";
}

}  // namespace mp::proxy
