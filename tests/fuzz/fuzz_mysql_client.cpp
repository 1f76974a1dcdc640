// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the MySQL client (libs/mysql, mp/mysql_client.hpp), what a server, or anything
// answering on its port, sends to source-binlog, monitor-mysql, replay-mysql and decoder-mysql's
// server reader. The input is everything the "server" says on one connection: a thread of this
// target serves it on a loopback port, closes its side and reads what the client sends until
// the client hangs up. The client logs in (handshake, auth switch) and then, whatever failed
// before, runs each of its calls: a text query with column names, commands whose responses
// differ (query, prepare, execute with a cursor, fetch, field list, statistics), a change of
// user and raw packet reads (a binlog stream). Each call must end with its result or an
// exception, never more: packets are bounded by a small max_packet, so memory stays bounded by
// it whatever lengths the input claims.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <mp/mysql_client.hpp>
#include <mp/mysql_wire.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kMaxPacket = 64 * 1024;

/// A loopback server that says one input per connection, one connection at a time.
class Server {
  public:
    Server() {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
            ::listen(listener_, 4) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            __builtin_trap();  // no loopback: nothing can be tested
        }
        port_ = ntohs(a.sin_port);
        std::thread([this] { serve(); }).detach();
    }
    uint16_t port() const { return port_; }
    /// What the next connection is told.
    void say(std::string bytes) {
        std::lock_guard<std::mutex> lock(mu_);
        next_ = std::move(bytes);
    }

  private:
    void serve() {
        for (;;) {
            const int fd = ::accept(listener_, nullptr, nullptr);
            if (fd < 0) {
                continue;
            }
            std::string bytes;
            {
                std::lock_guard<std::mutex> lock(mu_);
                bytes = next_;
            }
            size_t sent = 0;
            while (sent < bytes.size()) {
                const ssize_t n =
                    ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
                if (n <= 0) {
                    break;  // the client gave up first
                }
                sent += static_cast<size_t>(n);
            }
            ::shutdown(fd, SHUT_WR);  // the client reads the end of the input, not a reset
            char sink[4096];
            while (::recv(fd, sink, sizeof sink, 0) > 0) {
            }
            ::close(fd);
        }
    }

    int listener_ = -1;
    uint16_t port_ = 0;
    std::mutex mu_;
    std::string next_;
};

template <typename F>
void attempt(F&& call) {
    try {
        call();
    } catch (const std::exception&) {
        // refused, damaged or cut: a clean error is the expected outcome of most inputs
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Server server;
    if (size == 0) {
        return 0;
    }
    // The first byte chooses the login's options; the rest is what the server says.
    const uint8_t options = data[0];
    server.say(std::string(reinterpret_cast<const char*>(data + 1), size - 1));

    mp::mysql::ServerAddress a;
    a.port = server.port();
    a.user = "fuzz";
    a.password = (options & 1) != 0 ? "secret" : "";
    a.schema = (options & 2) != 0 ? "db" : "";
    a.extraCapabilities = (options & 4) != 0 ? mp::mysql::kSemanticCapabilities : 0;
    a.maxPacket = kMaxPacket;
    a.connectTimeoutMs = 2000;
    a.readTimeoutMs = 2000;  // never reached: the server's side ends with the input

    mp::mysql::Connection c;
    try {
        c.connect(a);
    } catch (const std::exception&) {
        if ((options & 8) == 0) {
            return 0;  // most inputs: the login alone
        }
        // else: the calls below on a connection that failed to log in must fail cleanly too
    }
    auto cmd = [](mp::mysql::Command k, std::string payload) {
        return static_cast<char>(k) + std::move(payload);
    };
    std::vector<std::string> names;
    attempt([&] {
        auto rows = c.query("SELECT 1", &names);
        if (names.size() > 4096 || rows.size() * 4 > size) {
            __builtin_trap();  // more columns than allowed, more rows than the bytes carried
        }
    });
    attempt([&] { c.command(cmd(mp::mysql::kQuery, "SELECT 1")); });
    attempt([&] { c.command(cmd(mp::mysql::kStmtPrepare, "SELECT ?")); });
    // execute statement 1, CURSOR_TYPE_READ_ONLY, one iteration, no parameters
    attempt([&] { c.command(cmd(mp::mysql::kStmtExecute, std::string("\1\0\0\0\1\1\0\0\0", 9))); });
    attempt([&] { c.command(cmd(mp::mysql::kStmtFetch, std::string("\1\0\0\0\x10\0\0\0", 8))); });
    attempt([&] { c.command(cmd(mp::mysql::kFieldList, std::string("t\0", 2))); });
    attempt([&] { c.command(cmd(mp::mysql::kStatistics, "")); });
    attempt([&] { c.changeUser("other", (options & 16) != 0 ? "pw" : "", "db"); });
    attempt([&] {
        std::string pkt;
        for (int i = 0; i < 64; ++i) {
            c.read(pkt);
            if (pkt.size() > kMaxPacket) {
                __builtin_trap();
            }
        }
    });
    c.close();
    return 0;
}
