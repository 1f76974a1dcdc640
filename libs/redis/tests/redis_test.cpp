// SPDX-License-Identifier: Apache-2.0
// libs/redis: the RESP2 parser on valid replies, on every split of them, on garbage and on
// hostile lengths (with the bytes it allocates counted), the client against a fake server that
// sends garbage, and the client, the subscriber and the lease against a real redis-server that
// the test starts on a free loopback port in its own temporary directory. Without redis-server
// (/usr/bin/redis-server, or $MP_REDIS_SERVER) those are skipped and the test exits 77 (ctest:
// skipped) once the rest passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mp/redis.hpp>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using mp::redis::Reply;
using Type = mp::redis::Reply::Type;

// Every byte allocated through operator new, to show what the parser allocates.
namespace {
std::atomic<size_t> g_allocated{0};
}  // namespace

// GCC sees operator new's malloc() through inlining and calls the free() below mismatched;
// they are a matched pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(size_t n) {
    g_allocated.fetch_add(n, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

const char* redisServerPath() {
    const char* env = std::getenv("MP_REDIS_SERVER");
    return env != nullptr && *env != '\0' ? env : "/usr/bin/redis-server";
}

bool haveRedisServer() { return ::access(redisServerPath(), X_OK) == 0; }

Reply status(std::string s) {
    Reply r;
    r.type = Type::Status;
    r.str = std::move(s);
    return r;
}
Reply error(std::string s) {
    Reply r;
    r.type = Type::Error;
    r.str = std::move(s);
    return r;
}
Reply bulk(std::string s) {
    Reply r;
    r.type = Type::Bulk;
    r.str = std::move(s);
    return r;
}
Reply integer(int64_t v) {
    Reply r;
    r.type = Type::Integer;
    r.integer = v;
    return r;
}
Reply nil() { return Reply(); }
Reply array(std::vector<Reply> e) {
    Reply r;
    r.type = Type::Array;
    r.elements = std::move(e);
    return r;
}

struct Sample {
    std::string wire;
    Reply reply;
};

std::vector<Sample> samples() {
    return {
        {"+OK\r\n", status("OK")},
        {"+\r\n", status("")},
        {"-ERR unknown command 'x'\r\n", error("ERR unknown command 'x'")},
        {":0\r\n", integer(0)},
        {":-42\r\n", integer(-42)},
        {":9223372036854775807\r\n", integer(INT64_MAX)},
        {":-9223372036854775808\r\n", integer(INT64_MIN)},
        {"$5\r\nhello\r\n", bulk("hello")},
        {"$0\r\n\r\n", bulk("")},
        {"$6\r\na\r\n\0b\n\r\n"s, bulk("a\r\n\0b\n"s)},
        {"$-1\r\n", nil()},
        {"*-1\r\n", nil()},
        {"*0\r\n", array({})},
        {"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n",
         array({bulk("message"), bulk("ch"), bulk("hi!")})},
        {"*2\r\n*2\r\n:1\r\n$-1\r\n*0\r\n", array({array({integer(1), nil()}), array({})})},
        {"*4\r\n+a\r\n-b\r\n*1\r\n*1\r\n:7\r\n$1\r\nz\r\n",
         array({status("a"), error("b"), array({array({integer(7)})}), bulk("z")})},
    };
}

std::string repeat(std::string_view s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        out += s;
    }
    return out;
}

/// Parses `wire` with the incremental parser, fed in pieces of `piece` bytes.
std::vector<Reply> parseInPieces(const std::string& wire, size_t piece,
                                 const mp::redis::Limits& lim = {}) {
    mp::redis::Parser p(lim);
    std::vector<Reply> out;
    Reply r;
    for (size_t at = 0; at < wire.size(); at += piece) {
        p.feed(std::string_view(wire).substr(at, piece));
        while (p.next(r)) {
            out.push_back(r);
        }
    }
    return out;
}

void expectError(const std::string& wire, const std::string& part = "",
                 const mp::redis::Limits& lim = {}) {
    CAPTURE(wire);
    Reply r;
    try {
        (void)mp::redis::parse(wire, r, lim);
        FAIL("no ProtocolError");
    } catch (const mp::redis::ProtocolError& e) {
        CHECK(std::string(e.what()).find(part) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("encode: an array of bulk strings") {
    CHECK(mp::redis::encode({"GET", "k"}) == "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    CHECK(mp::redis::encode({"SET", "", "a\0\r\n"s}) ==
          "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\0\r\n\r\n"s);
    // What encode() writes parses as an array of bulk strings (a server reads the same).
    Reply r;
    const std::string w = mp::redis::encode({"PUBLISH", "ch", "msg"});
    CHECK(mp::redis::parse(w, r) == w.size());
    CHECK(r == array({bulk("PUBLISH"), bulk("ch"), bulk("msg")}));
}

TEST_CASE("parse: valid replies, and what follows them is left") {
    for (const Sample& s : samples()) {
        CAPTURE(s.wire);
        Reply r;
        CHECK(mp::redis::parse(s.wire, r) == s.wire.size());
        CHECK(r == s.reply);
        Reply r2;
        CHECK(mp::redis::parse(s.wire + "+NEXT\r\n", r2) == s.wire.size());
        CHECK(r2 == s.reply);
        // encodeReply writes it back (canonically: a nil array as a nil bulk).
        Reply r3;
        const std::string again = mp::redis::encodeReply(r);
        CHECK(mp::redis::parse(again, r3) == again.size());
        CHECK(r3 == r);
    }
    CHECK(mp::redis::encodeReply(nil()) == "$-1\r\n");
    CHECK_THROWS_AS((void)mp::redis::encodeReply(status("a\r\nb")), std::invalid_argument);
    Reply r;
    CHECK(r.isNil());
    CHECK(mp::redis::parse("-ERR x\r\n", r) == 8);
    CHECK(r.isError());
    CHECK(mp::redis::parse("+OK\r\n", r) == 5);
    CHECK(r.isString("OK"));
}

TEST_CASE("parse: every split of a reply is incomplete, in pieces it is the same") {
    std::string all;
    std::vector<Reply> expected;
    for (const Sample& s : samples()) {
        CAPTURE(s.wire);
        for (size_t k = 0; k < s.wire.size(); ++k) {
            Reply r = status("untouched");
            CHECK(mp::redis::parse(std::string_view(s.wire).substr(0, k), r) == 0);
            CHECK(r == status("untouched"));
            // Split at k: the first part gives nothing, the rest the reply.
            mp::redis::Parser p;
            p.feed(std::string_view(s.wire).substr(0, k));
            CHECK_FALSE(p.next(r));
            p.feed(std::string_view(s.wire).substr(k));
            REQUIRE(p.next(r));
            CHECK(r == s.reply);
            CHECK(p.buffered() == 0);
        }
        all += s.wire;
        expected.push_back(s.reply);
    }
    // All of them back to back (pipelined), in pieces of every size from 1 byte.
    for (size_t piece = 1; piece <= all.size(); piece += (piece < 16 ? 1 : 7)) {
        CAPTURE(piece);
        CHECK(parseInPieces(all, piece) == expected);
    }
}

TEST_CASE("parse: garbage is a ProtocolError") {
    expectError("?x\r\n", "unknown type byte 0x3f");
    expectError("%1\r\n", "RESP3");
    expectError("_\r\n", "RESP3");
    expectError(std::string("\0", 1), "0x00");
    expectError("HTTP/1.1 200 OK\r\n", "unknown type byte 0x48");
    expectError("$-2\r\n", "negative length -2");
    expectError("*-5\r\n", "negative length");
    expectError("$-9223372036854775808\r\n", "negative length");
    expectError(":12a\r\n", "not a number");
    expectError(":\r\n", "empty number");
    expectError(":-\r\n", "empty number");
    expectError("$+3\r\nabc\r\n", "not a number");
    expectError("$ 3\r\nabc\r\n", "not a number");
    expectError(":9223372036854775808\r\n", "out of range");
    expectError(":-9223372036854775809\r\n", "out of range");
    expectError(":99999999999999999999\r\n", "out of range");
    expectError("$3\r\nabcd\r\n", "not followed by CRLF");
    expectError("$3\r\nab\r\n\r\n", "not followed by CRLF");
    expectError("+OK\n", "LF without CR");
    expectError("+O\rK\r\n", "CR without LF");
    expectError("*2\r\n:1\r\n!x\r\n", "unknown type byte");
    expectError("*1\r\n*1\r\n$1\r\nx\rx", "not followed by CRLF");
    expectError("$" + std::string(40, '1'), "length line too long");
    expectError(":" + std::string(40, '1') + "\r\n", "length line too long");
}

TEST_CASE("parse: the limits, checked on announced lengths before the data") {
    // 64 MiB is the default largest bulk string: announced, nothing allocated until it came.
    std::string big = "$" + std::to_string(64 << 20) + "\r\nabc";
    Reply r;
    size_t before = g_allocated.load();
    size_t took = mp::redis::parse(big, r);
    size_t allocated = g_allocated.load() - before;
    CHECK(took == 0);
    CHECK(allocated < 1024);
    expectError("$" + std::to_string((64 << 20) + 1) + "\r\n", "max_bulk");
    expectError("$9223372036854775807\r\n", "max_bulk");

    // A million elements announced, ten sent: nothing allocated for the rest.
    std::string many = "*1000000\r\n" + repeat(":1\r\n", 10);
    before = g_allocated.load();
    took = mp::redis::parse(many, r);
    allocated = g_allocated.load() - before;
    CHECK(took == 0);
    CHECK(allocated < 1024);
    expectError("*1000001\r\n", "max_elements");
    // All arrays of a reply counted: 600000 + 600000 announced.
    expectError("*2\r\n*600000\r\n" + repeat(":1\r\n", 600000) + "*600000\r\n", "max_elements");

    // Nesting: 16 arrays deep is fine, 17 is not; a million deep fails at 17, no recursion.
    CHECK(mp::redis::parse(repeat("*1\r\n", 16) + ":1\r\n", r) == 16 * 4 + 4);
    expectError(repeat("*1\r\n", 17) + ":1\r\n", "max_depth");
    expectError(repeat("*1\r\n", 1000000), "max_depth");
    // A nil or empty array at the limit is fine, an empty array below it is one level more.
    CHECK(mp::redis::parse(repeat("*1\r\n", 16) + "*-1\r\n", r) > 0);
    expectError(repeat("*1\r\n", 16) + "*0\r\n", "max_depth");

    // Small limits: each one, exactly at it and one past it.
    mp::redis::Limits lim;
    lim.maxBulk = 8;
    lim.maxElements = 3;
    lim.maxDepth = 2;
    lim.maxReplyBytes = 40;
    CHECK(mp::redis::parse("$8\r\n12345678\r\n", r, lim) == 14);
    expectError("$9\r\n", "max_bulk", lim);
    CHECK(mp::redis::parse("+12345678\r\n", r, lim) == 11);
    expectError("+123456789", "longer than the limits", lim);
    CHECK(mp::redis::parse("*3\r\n:1\r\n:2\r\n:3\r\n", r, lim) > 0);
    expectError("*1\r\n*3\r\n", "max_elements", lim);
    expectError("*1\r\n*1\r\n*1\r\n", "max_depth", lim);
    // 40 bytes: "*2\r\n" (4) + "$8\r\n12345678\r\n" (14) + "$16..." is past it.
    CHECK(mp::redis::parse("*2\r\n$8\r\n12345678\r\n$8\r\n12345678\r\n", r, lim) == 32);
    lim.maxBulk = 100;
    expectError("*2\r\n$8\r\n12345678\r\n$20\r\n", "max_reply_bytes", lim);
    expectError("*3\r\n$8\r\n12345678\r\n$8\r\n12345678\r\n+1234567", "longer than", lim);
    CHECK(mp::redis::parse("*3\r\n$8\r\n12345678\r\n$8\r\n12345678\r\n+12\r\n", r, lim) == 37);
}

TEST_CASE("Parser: a reply arriving in pieces grows the buffer with the bytes only") {
    // 64 MiB announced, 1 MiB sent in 16 KiB reads: the parser holds about what it was given.
    mp::redis::Parser p;
    const std::string chunk(16 * 1024, 'x');
    const size_t before = g_allocated.load();
    p.feed("$" + std::to_string(64 << 20) + "\r\n");
    Reply r;
    for (int i = 0; i < 64; ++i) {
        p.feed(chunk);
        CHECK_FALSE(p.next(r));
    }
    CHECK(p.buffered() == 64 * chunk.size() + 11);
    // std::string grows by doubling: every buffer it had, summed, is below 4x what it holds.
    CHECK(g_allocated.load() - before < 4 * p.buffered());

    // The whole 5 MiB reply then another, in 16 KiB pieces: the scan resumes (a quadratic
    // rescan of 5 MiB 320 times would take seconds here).
    std::string value(5 << 20, 'v');
    std::string wire = mp::redis::encodeReply(bulk(value)) + ":1\r\n";
    const auto t0 = std::chrono::steady_clock::now();
    auto replies = parseInPieces(wire, 16 * 1024);
    REQUIRE(replies.size() == 2);
    CHECK(replies[0].str == value);
    CHECK(replies[1] == integer(1));
    // An array of 200000 small elements, fed a few bytes at a time.
    std::string arr = "*200000\r\n" + repeat(":12345\r\n", 200000);
    replies = parseInPieces(arr, 5);
    REQUIRE(replies.size() == 1);
    CHECK(replies[0].elements.size() == 200000);
    CHECK(std::chrono::steady_clock::now() - t0 < 20s);

    // After a ProtocolError, reset() makes it usable again.
    mp::redis::Parser q;
    q.feed("+OK\r\n?");
    CHECK(q.next(r));
    CHECK_THROWS_AS(q.next(r), mp::redis::ProtocolError);
    q.reset();
    q.feed(":5\r\n");
    CHECK(q.next(r));
    CHECK(r == integer(5));
}

namespace {

/// A loopback listener on a free port.
struct Listener {
    int fd = -1;
    uint16_t port = 0;
    Listener() {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 8) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
    }
    ~Listener() { ::close(fd); }
};

/// A port nothing listens on (for now): bound, read, closed.
uint16_t freePort() {
    Listener l;
    return l.port;
}

mp::redis::Options local(uint16_t port) {
    mp::redis::Options o;
    o.host = "127.0.0.1";
    o.port = port;
    o.connectTimeoutMs = 2000;
    o.readTimeoutMs = 5000;
    return o;
}

/// A fake server: accepts one connection, reads the command, answers `answer`, keeps the
/// connection open until the client closes it.
void fakeServer(Listener& l, std::string answer) {
    const int c = ::accept(l.fd, nullptr, nullptr);
    if (c < 0) {
        return;
    }
    char buf[1024];
    (void)::recv(c, buf, sizeof buf, 0);
    (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
    while (::recv(c, buf, sizeof buf, 0) > 0) {
    }
    ::close(c);
}

}  // namespace

TEST_CASE("Client: a server that sends garbage or stalls, or none at all") {
    struct Case {
        std::string answer;
        std::string part;
        bool protocol;
    };
    const Case cases[] = {
        {"HTTP/1.1 400 Bad Request\r\n\r\n", "unknown type byte", true},
        {"$-7\r\n", "negative length", true},
        {"$99999999999\r\n", "max_bulk", true},
        {repeat("*1\r\n", 100), "max_depth", true},
        {"$1000\r\nonly a little", "no reply within 300 ms", false},
    };
    for (const Case& c : cases) {
        CAPTURE(c.answer);
        Listener l;
        std::thread t(fakeServer, std::ref(l), c.answer);
        auto o = local(l.port);
        o.readTimeoutMs = 300;
        mp::redis::Client client(o);
        std::string what;
        try {
            (void)client.command({"PING"});
            FAIL("no exception");
        } catch (const mp::redis::ProtocolError& e) {
            CHECK(c.protocol);
            what = e.what();
        } catch (const mp::redis::ConnectionError& e) {
            CHECK_FALSE(c.protocol);
            what = e.what();
        }
        CHECK(what.find(c.part) != std::string::npos);
        CHECK(what.find("127.0.0.1:" + std::to_string(l.port)) != std::string::npos);
        CHECK_FALSE(client.connected());
        client.close();
        t.join();
    }
    // A server that quotes the password back in its error: not in the exception.
    {
        Listener l;
        const std::string secret = "hunter2-Secret";
        std::thread t(fakeServer, std::ref(l), "-ERR you sent AUTH " + secret + "\r\n");
        auto o = local(l.port);
        o.password = secret;
        mp::redis::Client client(o);
        try {
            (void)client.command({"PING"});
            FAIL("no exception");
        } catch (const mp::redis::ConnectionError& e) {
            const std::string what = e.what();
            CHECK(what.find("AUTH refused: ERR you sent AUTH ***") != std::string::npos);
            CHECK(what.find(secret) == std::string::npos);
        }
        t.join();
    }
    // Nothing listening: a ConnectionError naming the address.
    const uint16_t port = freePort();
    mp::redis::Client client(local(port));
    try {
        (void)client.command({"PING"});
        FAIL("no exception");
    } catch (const mp::redis::ConnectionError& e) {
        CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(port) +
                                         ": cannot connect") != std::string::npos);
    }
    CHECK_THROWS_AS((void)client.command({}), std::invalid_argument);
}

namespace {

/// A redis-server child process on a free loopback port, in its own temporary directory;
/// stopped and the directory removed at the end.
class RedisServer {
  public:
    explicit RedisServer(std::vector<std::string> extra = {}) {
        char tmpl[] = "/tmp/mp-redis-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        // The port may be taken between freePort() and the server's bind: a few tries.
        for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
            port_ = freePort();
            start(extra);
            if (!waitReady()) {
                stop();
            }
        }
        if (pid_ < 0) {
            FAIL("redis-server did not start; its log:\n" << log());
        }
    }
    ~RedisServer() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    uint16_t port() const { return port_; }
    std::string log() const {
        std::ifstream in(dir_ + "/redis.log");
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

  private:
    void start(const std::vector<std::string>& extra) {
        std::vector<std::string> args{redisServerPath(),
                                      "--port",
                                      std::to_string(port_),
                                      "--bind",
                                      "127.0.0.1",
                                      "--save",
                                      "",
                                      "--appendonly",
                                      "no",
                                      "--dir",
                                      dir_,
                                      "--daemonize",
                                      "no"};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (std::string& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        const std::string logPath = dir_ + "/redis.log";
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test that crashed
            const int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        pid_ = pid;
    }

    /// Until it answers PING (10 s at most); false when it exited or did not answer.
    bool waitReady() {
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (std::chrono::steady_clock::now() < until) {
            int st = 0;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                return false;
            }
            try {
                auto o = local(port_);
                o.connectTimeoutMs = 200;
                o.readTimeoutMs = 1000;
                mp::redis::Client c(o);
                const Reply r = c.command({"PING"});
                if (r.isString("PONG") || r.isError()) {  // NOAUTH with requirepass
                    return true;
                }
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }

    void stop() {
        if (pid_ < 0) {
            return;
        }
        ::kill(pid_, SIGTERM);
        int st = 0;
        for (int i = 0; i < 250; ++i) {
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(20ms);
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        pid_ = -1;
    }

    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

const bool kNoServer = !haveRedisServer();

}  // namespace

TEST_CASE("real redis-server: commands, nil, errors, a 5 MiB value" * doctest::skip(kNoServer)) {
    RedisServer server;
    mp::redis::Client c(local(server.port()));
    CHECK_FALSE(c.connected());
    CHECK(c.command({"PING"}) == status("PONG"));
    CHECK(c.connected());
    CHECK(c.where() == "127.0.0.1:" + std::to_string(server.port()));
    CHECK(c.command({"SET", "k", "v"}) == status("OK"));
    CHECK(c.command({"GET", "k"}) == bulk("v"));
    CHECK(c.command({"GET", "missing"}) == nil());
    CHECK(c.command({"INCRBY", "n", "-5"}) == integer(-5));
    CHECK(c.command({"RPUSH", "l", "a", "", "c"}) == integer(3));
    CHECK(c.command({"LRANGE", "l", "0", "-1"}) == array({bulk("a"), bulk(""), bulk("c")}));
    CHECK(c.command({"LRANGE", "none", "0", "-1"}) == array({}));

    // Error replies are replies; the connection stays.
    Reply e = c.command({"NOSUCHCOMMAND", "x"});
    CHECK(e.isError());
    CHECK(e.str.rfind("ERR", 0) == 0);
    e = c.command({"GET", "l"});
    CHECK(e.isError());
    CHECK(e.str.rfind("WRONGTYPE", 0) == 0);
    CHECK(c.connected());

    // 5 MiB of every byte value (CR, LF, NUL included), both ways; a binary key.
    std::string value(5 << 20, '\0');
    std::mt19937 rng(7);
    for (char& ch : value) {
        ch = static_cast<char>(rng() & 0xff);
    }
    const std::string key = "bin\0\r\nkey"s;
    CHECK(c.command({"SET", key, value}) == status("OK"));
    CHECK(c.command({"STRLEN", key}) == integer(5 << 20));
    const Reply got = c.command({"GET", key});
    CHECK(got.type == Type::Bulk);
    CHECK(got.str.size() == value.size());
    CHECK(got.str == value);
    CHECK(c.command({"GET", "k"}) == bulk("v"));  // the stream is still in step
}

TEST_CASE("real redis-server: reconnects, timeouts, SELECT" * doctest::skip(kNoServer)) {
    RedisServer server;
    mp::redis::Client a(local(server.port()));
    mp::redis::Client b(local(server.port()));
    const Reply id = a.command({"CLIENT", "ID"});
    REQUIRE(id.type == Type::Integer);
    // The server closes a's idle connection: the next command reconnects before it is sent.
    CHECK(b.command({"CLIENT", "KILL", "ID", std::to_string(id.integer)}) == integer(1));
    std::this_thread::sleep_for(50ms);
    CHECK(a.command({"PING"}) == status("PONG"));
    CHECK(a.command({"CLIENT", "ID"}).integer != id.integer);

    // A reply later than the read timeout: thrown, naming host:port, the connection dropped;
    // the next command has a new one.
    auto o = local(server.port());
    o.readTimeoutMs = 200;
    mp::redis::Client slow(o);
    const auto t0 = std::chrono::steady_clock::now();
    try {
        (void)slow.command({"BLPOP", "nothing", "0"});
        FAIL("no timeout");
    } catch (const mp::redis::ConnectionError& ex) {
        CHECK(std::string(ex.what()) ==
              "redis 127.0.0.1:" + std::to_string(server.port()) + ": no reply within 200 ms");
    }
    CHECK(std::chrono::steady_clock::now() - t0 >= 200ms);
    CHECK_FALSE(slow.connected());
    CHECK(slow.command({"PING"}) == status("PONG"));

    // SELECT at connect.
    auto o3 = local(server.port());
    o3.db = 3;
    mp::redis::Client db3(o3);
    CHECK(db3.command({"SET", "in3", "x"}) == status("OK"));
    CHECK(a.command({"GET", "in3"}) == nil());
    CHECK(db3.command({"GET", "in3"}) == bulk("x"));
    db3.close();
    CHECK(db3.command({"GET", "in3"}) == bulk("x"));  // SELECT again after reconnecting
    o3.db = 999;
    mp::redis::Client bad(o3);
    CHECK_THROWS_WITH_AS((void)bad.command({"PING"}), doctest::Contains("SELECT 999 refused"),
                         mp::redis::ConnectionError);
}

TEST_CASE("real redis-server: requirepass and AUTH" * doctest::skip(kNoServer)) {
    const std::string secret = "s3cret-Pa55word";
    RedisServer server({"--requirepass", secret});
    // Without a password: the server's NOAUTH is a reply.
    mp::redis::Client none(local(server.port()));
    const Reply r = none.command({"GET", "k"});
    CHECK(r.isError());
    CHECK(r.str.rfind("NOAUTH", 0) == 0);

    auto o = local(server.port());
    o.password = secret;
    mp::redis::Client good(o);
    CHECK(good.command({"SET", "k", "v"}) == status("OK"));
    CHECK(good.command({"GET", "k"}) == bulk("v"));
    o.user = "default";  // AUTH user password (ACL) works as well
    mp::redis::Client withUser(o);
    CHECK(withUser.command({"GET", "k"}) == bulk("v"));

    const std::string wrong = "wrong-Pa55word-123";
    o.user.clear();
    o.password = wrong;
    mp::redis::Client bad(o);
    std::string what;
    try {
        (void)bad.command({"GET", "k"});
        FAIL("AUTH with a wrong password succeeded");
    } catch (const mp::redis::ConnectionError& e) {
        what = e.what();
    }
    MESSAGE("wrong password: " << what);
    CHECK(what.find("AUTH refused") != std::string::npos);
    CHECK(what.find("127.0.0.1:" + std::to_string(server.port())) != std::string::npos);
    CHECK(what.find(wrong) == std::string::npos);
    CHECK(what.find(secret) == std::string::npos);
    CHECK(what.find("Pa55word") == std::string::npos);
    CHECK_FALSE(bad.connected());
}

TEST_CASE("real redis-server: pub/sub through Subscriber" * doctest::skip(kNoServer)) {
    RedisServer server;
    mp::redis::Client pub(local(server.port()));
    mp::redis::Subscriber sub(local(server.port()), {"ch1", "ch2"});

    // Nothing published: nullopt after the timeout.
    auto t0 = std::chrono::steady_clock::now();
    CHECK_FALSE(sub.next(150).has_value());
    CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
    CHECK_FALSE(sub.next(0).has_value());

    CHECK(pub.command({"PUBLISH", "ch1", "hello"}) == integer(1));
    CHECK(pub.command({"PUBLISH", "other", "not for us"}) == integer(0));
    std::string big(1 << 20, '\0');
    for (size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>(i * 31);
    }
    CHECK(pub.command({"PUBLISH", "ch2", big}) == integer(1));
    auto m = sub.next(5000);
    REQUIRE(m.has_value());
    CHECK(m->first == "ch1");
    CHECK(m->second == "hello");
    m = sub.next(5000);
    REQUIRE(m.has_value());
    CHECK(m->first == "ch2");
    CHECK(m->second == big);
    CHECK_FALSE(sub.next(50).has_value());

    // The server drops the subscriber: next() throws, the call after subscribes again.
    CHECK(pub.command({"CLIENT", "KILL", "TYPE", "pubsub"}) == integer(1));
    CHECK_THROWS_WITH_AS((void)sub.next(5000), doctest::Contains("closed the connection"),
                         mp::redis::ConnectionError);
    CHECK_FALSE(sub.next(0).has_value());
    CHECK(pub.command({"PUBLISH", "ch1", "again"}) == integer(1));
    m = sub.next(5000);
    REQUIRE(m.has_value());
    CHECK(*m == std::make_pair(std::string("ch1"), std::string("again")));
}

TEST_CASE("real redis-server: the lease" * doctest::skip(kNoServer)) {
    RedisServer server;
    mp::redis::Client ca(local(server.port()));
    mp::redis::Client cb(local(server.port()));
    const int64_t ttl = 1000;
    mp::redis::Lease a(ca, "monitor:lease", "A", ttl);
    mp::redis::Lease b(cb, "monitor:lease", "B", ttl);
    CHECK_THROWS_AS(mp::redis::Lease(ca, "k", "A", 0), std::invalid_argument);

    CHECK(a.holder() == std::nullopt);
    const auto before = std::chrono::steady_clock::now();
    CHECK(a.acquireOrRenew());  // nobody held it: A takes it
    CHECK(a.held());
    CHECK(a.heldUntil() >= before + std::chrono::milliseconds(ttl));
    CHECK(a.heldUntil() <= std::chrono::steady_clock::now() + std::chrono::milliseconds(ttl));
    CHECK(a.holder() == "A");
    CHECK_FALSE(b.acquireOrRenew());  // B cannot
    CHECK_FALSE(b.held());
    CHECK(b.holder() == "A");

    // A renews: the ttl is full again.
    std::this_thread::sleep_for(400ms);
    CHECK(ca.command({"PTTL", "monitor:lease"}).integer <= 600);
    CHECK(a.acquireOrRenew());
    CHECK(ca.command({"PTTL", "monitor:lease"}).integer > 600);
    CHECK_FALSE(b.acquireOrRenew());

    // A stops renewing: after the ttl B takes it.
    std::this_thread::sleep_for(std::chrono::milliseconds(ttl + 100));
    CHECK_FALSE(a.held());  // A's own clock says so too
    CHECK(b.acquireOrRenew());
    CHECK(b.holder() == "B");
    // A's late release does not delete B's lease, nor can A take it back.
    a.release();
    CHECK(b.holder() == "B");
    CHECK_FALSE(a.acquireOrRenew());
    CHECK(b.acquireOrRenew());  // B renews

    // B releases: gone, A takes it.
    b.release();
    CHECK_FALSE(b.held());
    CHECK(a.holder() == std::nullopt);
    CHECK(a.acquireOrRenew());
    CHECK(a.holder() == "A");

    // A key of another type is an error, thrown.
    CHECK(ca.command({"RPUSH", "a:list", "x"}) == integer(1));
    mp::redis::Lease wrong(ca, "a:list", "A", ttl);
    CHECK_THROWS_AS((void)wrong.acquireOrRenew(), std::runtime_error);
}

int main(int argc, char** argv) {
    doctest::Context ctx(argc, argv);
    const int rc = ctx.run();
    if (ctx.shouldExit() || rc != 0) {
        return rc;
    }
    if (kNoServer) {
        std::printf(
            "SKIPPED: %s not found (set MP_REDIS_SERVER): the tests against a real Redis did not "
            "run; the parser and fake-server tests passed\n",
            redisServerPath());
        return 77;
    }
    return 0;
}
