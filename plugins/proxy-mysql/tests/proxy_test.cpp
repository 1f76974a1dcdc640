// SPDX-License-Identifier: Apache-2.0
// proxy-mysql without a monitor: the event-stream and topology parsers, and the proxy itself
// between real sockets (small TCP servers on loopback that greet with their name and echo):
// bytes exact through small buffers, half-close, round robin, refusals, switches.
#include "proxy.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "topology.hpp"

using namespace mp::proxy;

namespace {

// A loopback server: sends `name` and a newline, then echoes until the client half-closes,
// then closes. One thread per connection (test only).
class EchoServer {
  public:
    explicit EchoServer(std::string name) : name_(std::move(name)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        ::listen(fd_, 64);
        thread_ = std::thread([this] {
            for (;;) {
                int c = ::accept(fd_, nullptr, nullptr);
                if (c < 0) {
                    return;
                }
                ++accepted;
                std::thread([this, c] {
                    std::string hello = name_ + "\n";
                    ::send(c, hello.data(), hello.size(), MSG_NOSIGNAL);
                    char buf[65536];
                    for (;;) {
                        ssize_t n = ::recv(c, buf, sizeof buf, 0);
                        if (n <= 0) {
                            break;
                        }
                        ::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
                    }
                    ::close(c);
                }).detach();
            }
        });
    }
    ~EchoServer() {
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    uint16_t port() const { return port_; }
    Target target() const { return Target{"127.0.0.1", port_}; }
    std::atomic<int> accepted{0};

  private:
    std::string name_;
    int fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

uint16_t freePort() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

int dial(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

std::string readLine(int fd) {
    std::string out;
    char c = 0;
    while (::recv(fd, &c, 1, 0) == 1 && c != '\n') {
        out += c;
    }
    return out;
}

template <class F>
bool eventually(F f, int ms = 5000) {
    for (int i = 0; i < ms / 10; ++i) {
        if (f()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return f();
}

Options options() {
    Options o;
    o.masterListen = "127.0.0.1:" + std::to_string(freePort());
    o.slaveListen = "127.0.0.1:" + std::to_string(freePort());
    o.bufferBytes = 4096;  // small: back-pressure on every large transfer
    o.threads = 2;
    return o;
}
}  // namespace

TEST_SUITE("proxy-mysql") {
    TEST_CASE("event streams: fields, line ends, comments, limits") {
        std::vector<std::pair<std::string, std::string>> got;
        SseParser p([&](const std::string& e, const std::string& d) { got.emplace_back(e, d); });
        const std::string stream =
            ": keepalive\n\nevent: init\ndata: {\"a\":1}\n\nevent: update\r\ndata: x\r\ndata:y\r\n"
            "\r\nid: 7\nretry: 10\ndata: plain\n\nevent: lonely\n\n";
        for (size_t split = 0; split <= stream.size(); ++split) {  // cut at every byte
            got.clear();
            SseParser q(
                [&](const std::string& e, const std::string& d) { got.emplace_back(e, d); });
            q.feed(stream.substr(0, split));
            q.feed(stream.substr(split));
            REQUIRE(got.size() == 3);
            CHECK(got[0] == std::make_pair(std::string("init"), std::string("{\"a\":1}")));
            CHECK(got[1] == std::make_pair(std::string("update"), std::string("x\ny")));
            CHECK(got[2] == std::make_pair(std::string("message"), std::string("plain")));
        }
        got.clear();
        p.feed("data: a\rdata: b\r\r");  // CR alone ends lines too
        REQUIRE(got.size() == 1);
        CHECK(got[0].second == "a\nb");
        SseParser small([](const std::string&, const std::string&) {}, 16, 32);
        CHECK_THROWS_AS(small.feed(std::string(17, 'x')), SseError);
        SseParser smallEvent([](const std::string&, const std::string&) {}, 16, 30);
        smallEvent.feed("data: 0123456789\ndata: 0123456789\n");
        CHECK_THROWS_AS(smallEvent.feed("data: 0123456789\n"), SseError);
    }

    TEST_CASE("topology: LAIN's JSON, and garbage refused") {
        auto t = parseTopology(
            R"({"master":{"containers":[{"container_ip":"127.0.0.1","container_port":3307}]},)"
            R"("slave":{"containers":[{"container_ip":"::1","container_port":3308}]}})");
        REQUIRE(t);
        REQUIRE(t->master.size() == 1);
        CHECK(t->master[0].key() == "127.0.0.1:3307");
        CHECK(t->slave[0].key() == "[::1]:3308");
        CHECK(parseTopology("{}")->master.empty());
        std::string why;
        CHECK_FALSE(parseTopology("not json", &why));
        CHECK(why.find("not JSON") == 0);
        CHECK_FALSE(parseTopology(R"({"master":{"containers":[{"container_ip":"db.example",)"
                                  R"("container_port":3306}]}})",
                                  &why));
        CHECK(why.find("not an IP address") != std::string::npos);
        CHECK_FALSE(parseTopology(
            R"({"master":{"containers":[{"container_ip":"10.0.0.1","container_port":70000}]}})"));
        CHECK_FALSE(parseTopology(R"({"master":[1,2]})"));
    }

    TEST_CASE("bytes are exact through small buffers; half-close; round robin; refusals") {
        EchoServer a("a"), b("b"), c("c");
        Options o = options();
        Proxy proxy(o, [](int, const std::string&) {});
        proxy.start();
        // No targets yet: both ports close at once.
        int early = dial(proxy.masterPort());
        char byte = 0;
        CHECK(::recv(early, &byte, 1, 0) == 0);
        ::close(early);
        CHECK(eventually([&] { return proxy.stats().refused == 1; }));

        Topology t;
        t.master = {a.target()};
        t.slave = {b.target(), c.target()};
        proxy.setTargets(t);
        int m = dial(proxy.masterPort());
        CHECK(readLine(m) == "a");
        // 3 MiB both ways through 4 KiB buffers: the writer must not outrun the reader.
        std::string big(3u << 20, '\0');
        std::mt19937 rng(42);
        for (auto& ch : big) {
            ch = static_cast<char>(rng());
        }
        std::thread writer([&] {
            size_t done = 0;
            while (done < big.size()) {
                ssize_t n = ::send(m, big.data() + done, big.size() - done, MSG_NOSIGNAL);
                REQUIRE(n > 0);
                done += static_cast<size_t>(n);
            }
            ::shutdown(m, SHUT_WR);  // half-close: reaches the server, which then closes
        });
        std::string back;
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(m, buf, sizeof buf, 0);
            if (n <= 0) {
                break;
            }
            back.append(buf, static_cast<size_t>(n));
        }
        writer.join();
        ::close(m);
        CHECK(back.size() == big.size());
        CHECK(back == big);
        CHECK(eventually([&] { return proxy.stats().open == 0; }));
        CHECK(proxy.stats().bytesToServer == big.size());
        CHECK(proxy.stats().bytesToClient == big.size() + 2);  // and "a\n"

        std::set<std::string> names;
        for (int i = 0; i < 4; ++i) {
            int s = dial(proxy.slavePort());
            names.insert(readLine(s));
            ::close(s);
        }
        CHECK(names == std::set<std::string>{"b", "c"});
        CHECK(proxy.targetsJson().find("\"127.0.0.1:" + std::to_string(b.port()) +
                                       "\":{\"open\":") != std::string::npos);

        // A slave that does not answer: the next one is tried.
        Topology down = t;
        down.slave = {Target{"127.0.0.1", freePort()}, c.target()};
        proxy.setTargets(down);
        for (int i = 0; i < 2; ++i) {
            int s = dial(proxy.slavePort());
            CHECK(readLine(s) == "c");
            ::close(s);
        }
        // No slave at all: refused (no fallback).
        Topology none = t;
        none.slave.clear();
        proxy.setTargets(none);
        int s = dial(proxy.slavePort());
        CHECK(::recv(s, &byte, 1, 0) == 0);
        ::close(s);
        proxy.stop();
    }

    TEST_CASE("a switch: old connections stay (default) or go after the grace") {
        EchoServer a("a"), b("b");
        for (int grace : {0, 200}) {
            Options o = options();
            o.closeAfterSwitchMs = grace;
            Proxy proxy(o, [](int, const std::string&) {});
            proxy.start();
            Topology t;
            t.master = {a.target()};
            proxy.setTargets(t);
            int old = dial(proxy.masterPort());
            CHECK(readLine(old) == "a");
            t.master = {b.target()};
            proxy.setTargets(t);
            int fresh = dial(proxy.masterPort());
            CHECK(readLine(fresh) == "b");
            std::this_thread::sleep_for(std::chrono::milliseconds(600));
            ::send(old, "ping\n", 5, MSG_NOSIGNAL);
            if (grace == 0) {
                CHECK(readLine(old) == "ping");  // still on a, still working
                CHECK(proxy.stats().closedAfterSwitch == 0);
            } else {
                char byte = 0;
                CHECK(::recv(old, &byte, 1, 0) <= 0);  // closed by the proxy
                CHECK(proxy.stats().closedAfterSwitch == 1);
                ::send(fresh, "ping\n", 5, MSG_NOSIGNAL);
                CHECK(readLine(fresh) == "ping");  // the new master's stays
            }
            ::close(old);
            ::close(fresh);
            proxy.stop();
        }
    }

    TEST_CASE("memory is bounded by the bytes of the buffers: one connection too many is closed") {
        EchoServer a("a");
        Options o = options();
        o.maxMemoryBytes = 3 * 2 * o.bufferBytes;  // three connections' buffers
        Proxy proxy(o, [](int, const std::string&) {});
        proxy.start();
        Topology t;
        t.master = {a.target()};
        proxy.setTargets(t);
        std::vector<int> held;
        for (int i = 0; i < 3; ++i) {
            held.push_back(dial(proxy.masterPort()));
            CHECK(readLine(held.back()) == "a");
        }
        int extra = dial(proxy.masterPort());
        char byte = 0;
        CHECK(::recv(extra, &byte, 1, 0) == 0);  // closed at once
        ::close(extra);
        CHECK(proxy.stats().full == 1);
        ::close(held[0]);
        CHECK(eventually([&] { return proxy.stats().open == 2; }));
        int again = dial(proxy.masterPort());  // room again
        CHECK(readLine(again) == "a");
        ::close(again);
        for (size_t i = 1; i < held.size(); ++i) {
            ::close(held[i]);
        }
        proxy.stop();
    }
}
