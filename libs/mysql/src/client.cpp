// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mp/dial.hpp>
#include <mp/mysql_client.hpp>
#include <mp/mysql_wire.hpp>

namespace mp::mysql {
namespace {

constexpr uint32_t kLongPassword = 1;
constexpr uint32_t kLongFlag = 4;
constexpr uint32_t kConnectWithDb = 8;
constexpr uint32_t kProtocol41 = 0x200;
constexpr uint32_t kSsl = 0x800;
constexpr uint32_t kTransactions = 0x2000;
constexpr uint32_t kSecureConnection = 0x8000;
constexpr uint32_t kMultiResults = 0x20000;
constexpr uint32_t kPluginAuth = 0x80000;
constexpr uint8_t kUtf8mb4 = 45;
constexpr size_t kMaxWire = 0xffffff;
constexpr size_t kReadBuffer = 64 * 1024;
constexpr uint8_t kOk = 0x00;
constexpr uint8_t kEof = 0xfe;
constexpr uint8_t kErr = 0xff;
constexpr uint8_t kLocalInfile = 0xfb;
constexpr uint16_t kMoreResults = 0x0008;
constexpr uint16_t kCursorExists = 0x0040;
const char* kNativePassword = "mysql_native_password";
const char* kCachingSha2 = "caching_sha2_password";
constexpr uint8_t kAuthMoreData = 0x01;
constexpr uint8_t kFastAuthOk = 0x03;
constexpr uint8_t kFullAuth = 0x04;

std::string sha1(const std::string& s) {
    unsigned char out[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), out);
    return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

std::string sha256(const std::string& s) {
    unsigned char out[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), out);
    return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

/// The answer to an auth request of `plugin` (one of the two spoken here).
std::string scramble(const std::string& plugin, const std::string& password,
                     const std::string& nonce) {
    return plugin == kCachingSha2 ? cachingSha2Scramble(password, nonce)
                                  : nativePasswordScramble(password, nonce);
}

/// OpenSSL's last error, as one line (its queue emptied).
std::string tlsError() {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        out = buf;  // the last is the most precise
    }
    return out.empty() ? std::string("no detail") : out;
}

// An SSL_read or SSL_write that did not move bytes, as recv() and send() say it: 0 for the end
// of the stream, else -1 and errno (EAGAIN for the socket's timeout, EPROTO for TLS itself).
ssize_t tlsFailure(int sslError) {
    const int sys = errno;
    ERR_clear_error();
    switch (sslError) {
        case SSL_ERROR_ZERO_RETURN:
            return 0;  // the server closed TLS
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            errno = EAGAIN;  // a blocking socket wants more only when its timeout passed
            return -1;
        case SSL_ERROR_SYSCALL:
            errno = sys;
            return sys == 0 ? 0 : -1;  // 0: cut without close_notify
        default:
            errno = EPROTO;
            return -1;
    }
}

}  // namespace

std::optional<Tls> parseTls(std::string_view name) {
    if (name == "off") {
        return Tls::Off;
    }
    if (name == "required") {
        return Tls::Required;
    }
    if (name == "verify_ca") {
        return Tls::VerifyCa;
    }
    if (name == "verify_identity") {
        return Tls::VerifyIdentity;
    }
    return std::nullopt;
}

std::string nativePasswordScramble(const std::string& password, const std::string& salt) {
    if (password.empty()) {
        return "";
    }
    std::string stage1 = sha1(password);
    std::string stage2 = sha1(stage1);
    std::string mix = sha1(salt + stage2);
    for (size_t i = 0; i < mix.size(); ++i) {
        mix[i] = static_cast<char>(mix[i] ^ stage1[i]);
    }
    return mix;
}

std::string cachingSha2Scramble(const std::string& password, const std::string& nonce) {
    if (password.empty()) {
        return "";
    }
    std::string p1 = sha256(password);
    const std::string p3 = sha256(sha256(p1) + nonce);
    for (size_t i = 0; i < p1.size(); ++i) {
        p1[i] = static_cast<char>(p1[i] ^ p3[i]);
    }
    return p1;
}

void Connection::raise(const std::string& err) {
    PacketReader r(reinterpret_cast<const uint8_t*>(err.data()), err.size());
    r.skip(1);
    auto code = static_cast<uint16_t>(r.le(2));
    std::string state;
    if (r.left() > 0 && *r.here() == '#') {
        r.skip(1);
        state = r.has(5) ? std::string(reinterpret_cast<const char*>(r.here()), 5) : "";
        r.skip(5);
    }
    throw ServerError(code, state, "server error " + std::to_string(code) + ": " + r.rest(512));
}

void Connection::connect(const ServerAddress& a) {
    close();
    maxPacket_ = a.maxPacket;
    const std::string where = a.host + ":" + std::to_string(a.port);
    std::string why;
    const int dialed = net::dial(a.host, a.port, a.connectTimeoutMs, why);
    if (dialed < 0) {
        throw std::runtime_error("cannot connect to " + where + ": " + why);
    }
    // Blocking from here on, with read and write timeouts.
    ::fcntl(dialed, F_SETFL, ::fcntl(dialed, F_GETFL) & ~O_NONBLOCK);
    fd_ = dialed;
    int fd = fd_;
    timeval tv{a.readTimeoutMs / 1000, (a.readTimeoutMs % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    // Handshake v10.
    std::string hs;
    seq_ = 0;
    read(hs);
    if (!hs.empty() && static_cast<uint8_t>(hs[0]) == kErr) {
        raise(hs);
    }
    PacketReader r(reinterpret_cast<const uint8_t*>(hs.data()), hs.size());
    if (r.le(1) != 10) {
        throw std::runtime_error(where + " is not a MySQL/MariaDB server (handshake)");
    }
    version_ = r.nulString(128);
    connectionId_ = static_cast<uint32_t>(r.le(4));
    std::string salt(reinterpret_cast<const char*>(r.here()), r.has(8) ? 8 : 0);
    r.skip(8);
    r.skip(1);
    uint32_t caps = static_cast<uint32_t>(r.le(2));
    r.skip(1 + 2);  // charset, status
    caps |= static_cast<uint32_t>(r.le(2)) << 16;
    size_t saltLen = r.le(1);
    r.skip(10);
    std::string plugin = kNativePassword;
    if ((caps & kSecureConnection) != 0) {
        size_t n = saltLen > 8 ? saltLen - 8 : 13;
        n = n > 13 ? n : 13;
        if (r.has(n)) {
            salt.append(reinterpret_cast<const char*>(r.here()), n);
            r.skip(n);
        }
        if (!salt.empty() && salt.back() == '\0') {
            salt.pop_back();
        }
        if ((caps & kPluginAuth) != 0 && r.left() > 0) {
            plugin = r.nulString(64);
        }
    }
    if (!r.ok()) {
        throw std::runtime_error(where + ": damaged handshake");
    }
    if ((caps & kProtocol41) == 0) {
        throw std::runtime_error(where + ": server too old (no protocol 4.1)");
    }
    uint32_t mine = kLongPassword | kLongFlag | kProtocol41 | kTransactions | kSecureConnection |
                    kMultiResults | kPluginAuth | (a.extraCapabilities & kSemanticCapabilities);
    if (!a.schema.empty()) {
        mine |= kConnectWithDb;
    }
    salt_ = salt;
    collation_ = a.collation != 0 ? a.collation : kUtf8mb4;
    if (a.tls != Tls::Off) {
        if ((caps & kSsl) == 0) {
            throw TlsError(TlsError::Reason::NotOffered,
                           where + " does not offer TLS (its ssl_cert and ssl_key are not set)");
        }
        mine |= kSsl;
        startTls(a, where, mine);
    }
    // The answer for the server's default plugin when it is one spoken here (MySQL 8's
    // caching_sha2_password), else mysql_native_password's: the server asks for another
    // (an auth switch) when the user's is not that one.
    if (plugin != kCachingSha2) {
        plugin = kNativePassword;
    }
    std::string auth = scramble(plugin, a.password, salt);
    std::string resp;
    putLe(resp, mine, 4);
    putLe(resp, 1u << 24, 4);  // max packet we send
    resp += static_cast<char>(collation_);
    resp.append(23, '\0');
    resp += a.user;
    resp += '\0';
    resp += static_cast<char>(auth.size());
    resp += auth;
    if (!a.schema.empty()) {
        resp += a.schema;
        resp += '\0';
    }
    resp += plugin;
    resp += '\0';
    writePacket(resp);
    finishAuth(where, a.password, nullptr, plugin, salt);
}

void Connection::finishAuth(const std::string& where, const std::string& password, Response* out,
                            std::string plugin, std::string nonce) {
    for (int round = 0; round < 4; ++round) {
        std::string reply;
        read(reply);
        const auto first = reply.empty() ? kErr : static_cast<uint8_t>(reply[0]);
        if (first == kOk) {
            if (out != nullptr) {
                parseOk(reply, *out);
            }
            return;
        }
        if (first == kErr) {
            if (out != nullptr) {
                parseErr(reply, *out);
                return;
            }
            raise(reply);
        }
        if (first == kEof) {  // auth switch: plugin name, then its data
            PacketReader s(reinterpret_cast<const uint8_t*>(reply.data()), reply.size());
            s.skip(1);
            std::string name = s.nulString(64);
            std::string data = s.rest(64);
            if (!data.empty() && data.back() == '\0') {
                data.pop_back();
            }
            if (name != kNativePassword && name != kCachingSha2) {
                throw ServerError(ServerError::kAuthPluginError, "HY000",
                                  where + ": the server asks for authentication plugin '" + name +
                                      "'; this client speaks mysql_native_password and "
                                      "caching_sha2_password");
            }
            plugin = std::move(name);
            nonce = std::move(data);
            writePacket(scramble(plugin, password, nonce));
            continue;
        }
        if (first == kAuthMoreData && plugin == kCachingSha2 && reply.size() == 2) {
            if (static_cast<uint8_t>(reply[1]) == kFastAuthOk) {
                continue;  // the server had the password's hash cached: its OK follows
            }
            if (static_cast<uint8_t>(reply[1]) == kFullAuth) {
                // The server has no hash of this password cached yet (none since it started,
                // or FLUSH PRIVILEGES): it wants the password itself. Sent over TLS only; the
                // RSA exchange without TLS trusts a key sent in clear, which a man in the middle
                // could replace (MySQL's clients refuse it unless told otherwise, too).
                if (tls_ == nullptr) {
                    throw ServerError(
                        ServerError::kAuthPluginError, "HY000",
                        where +
                            ": caching_sha2_password wants the password itself (the server has not "
                            "cached this user's yet), which is sent over TLS only: set tls "
                            "(required or stricter), or let one login over TLS or the server's "
                            "socket fill its cache");
                }
                std::string clear = password;
                clear += '\0';
                writePacket(clear);
                continue;
            }
        }
        throw std::runtime_error(where + ": unexpected packet during login");
    }
    throw std::runtime_error(where + ": login did not end");
}

void Connection::startTls(const ServerAddress& a, const std::string& where, uint32_t caps) {
    // The SSL request: the login packet's first 32 bytes, in plain; TLS follows at once.
    std::string req;
    putLe(req, caps, 4);
    putLe(req, 1u << 24, 4);
    req += static_cast<char>(collation_);
    req.append(23, '\0');
    writePacket(req);

    const std::string failed = "TLS with " + where + " failed: ";
    tlsContext_ = SSL_CTX_new(TLS_client_method());
    if (tlsContext_ == nullptr || SSL_CTX_set_min_proto_version(tlsContext_, TLS1_2_VERSION) != 1) {
        throw TlsError(TlsError::Reason::Setup, failed + tlsError());
    }
    if (a.tls == Tls::VerifyCa || a.tls == Tls::VerifyIdentity) {
        if (!a.tlsCa.empty() && ::access(a.tlsCa.c_str(), R_OK) != 0) {
            throw TlsError(TlsError::Reason::Setup, failed + "cannot read the CA file '" + a.tlsCa +
                                                        "': " + std::strerror(errno));
        }
        const int loaded =
            a.tlsCa.empty() ? SSL_CTX_set_default_verify_paths(tlsContext_)
                            : SSL_CTX_load_verify_locations(tlsContext_, a.tlsCa.c_str(), nullptr);
        if (loaded != 1) {
            throw TlsError(TlsError::Reason::Setup, failed + "cannot read the CA file '" + a.tlsCa +
                                                        "' (" + tlsError() + ")");
        }
        SSL_CTX_set_verify(tlsContext_, SSL_VERIFY_PEER, nullptr);
    }
    tls_ = SSL_new(tlsContext_);
    if (tls_ == nullptr || SSL_set_fd(tls_, fd_.load()) != 1) {
        throw TlsError(TlsError::Reason::Setup, failed + tlsError());
    }
    in6_addr ip{};
    const bool literal = ::inet_pton(AF_INET, a.host.c_str(), &ip) == 1 ||
                         ::inet_pton(AF_INET6, a.host.c_str(), &ip) == 1;
    if (!literal) {
        SSL_set_tlsext_host_name(tls_, a.host.c_str());  // SNI: names only
    }
    if (a.tls == Tls::VerifyIdentity) {
        X509_VERIFY_PARAM* param = SSL_get0_param(tls_);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int set = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, a.host.c_str())
                                : X509_VERIFY_PARAM_set1_host(param, a.host.c_str(), 0);
        if (set != 1) {
            throw TlsError(TlsError::Reason::Setup, failed + tlsError());
        }
    }
    if (const int done = SSL_connect(tls_); done != 1) {
        const int sslError = SSL_get_error(tls_, done);
        const long verified = SSL_get_verify_result(tls_);
        if (verified != X509_V_OK) {
            std::string why =
                std::string("certificate: ") + X509_verify_cert_error_string(verified);
            const bool wrongHost = verified == X509_V_ERR_HOSTNAME_MISMATCH ||
                                   verified == X509_V_ERR_IP_ADDRESS_MISMATCH;
            if (wrongHost) {
                why += " (it is not for " + a.host + ")";
            }
            ERR_clear_error();
            throw TlsError(wrongHost ? TlsError::Reason::WrongHost : TlsError::Reason::Untrusted,
                           failed + why);
        }
        if (sslError == SSL_ERROR_SSL) {  // the protocol: versions, ciphers
            throw TlsError(TlsError::Reason::Setup, failed + tlsError());
        }
        ERR_clear_error();
        throw std::runtime_error(failed + "the connection was cut during the TLS handshake");
    }
}

std::string Connection::tlsSession() const {
    if (tls_ == nullptr) {
        return {};
    }
    return std::string(SSL_get_version(tls_)) + " " + SSL_get_cipher_name(tls_);
}

ssize_t Connection::receive(int fd, void* p, size_t n) {
    if (tls_ == nullptr) {
        return ::recv(fd, p, n, 0);
    }
    const int want = static_cast<int>(std::min<size_t>(n, 1u << 30));
    const int got = SSL_read(tls_, p, want);
    if (got > 0) {
        return got;
    }
    return tlsFailure(SSL_get_error(tls_, got));
}

ssize_t Connection::transmit(int fd, const char* p, size_t n) {
    if (tls_ == nullptr) {
        return ::send(fd, p, n, MSG_NOSIGNAL);
    }
    const int wrote = SSL_write(tls_, p, static_cast<int>(std::min<size_t>(n, 1u << 30)));
    if (wrote > 0) {
        return wrote;
    }
    const ssize_t r = tlsFailure(SSL_get_error(tls_, wrote));
    if (r == 0) {
        errno = EPIPE;
    }
    return -1;
}

void Connection::close() {
    rpos_ = rend_ = 0;  // what was buffered belonged to that connection
    if (tls_ != nullptr) {
        SSL_free(tls_);  // no close_notify: the socket closes next (it may be cut already)
        tls_ = nullptr;
    }
    if (tlsContext_ != nullptr) {
        SSL_CTX_free(tlsContext_);
        tlsContext_ = nullptr;
    }
    int fd = fd_.exchange(-1);
    if (fd >= 0) {
        ::close(fd);
    }
}

std::string Connection::address(bool local) const {
    const int fd = fd_.load();
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    auto* sa = reinterpret_cast<sockaddr*>(&ss);
    if (fd < 0 || (local ? ::getsockname(fd, sa, &len) : ::getpeername(fd, sa, &len)) != 0) {
        return {};
    }
    char ip[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        return "[" + std::string(ip) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    if (ss.ss_family != AF_INET) {
        return {};
    }
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(in4->sin_port));
}

void Connection::interrupt() {
    int fd = fd_.load();
    if (fd >= 0) {
        ::shutdown(fd, SHUT_RDWR);
    }
}

void Connection::readExact(uint8_t* p, size_t n) {
    // From the buffer first: a response of many small packets (rows) costs one recv() per
    // buffer, not two per packet.
    while (n > 0) {
        if (rpos_ < rend_) {
            const size_t take = std::min(n, rend_ - rpos_);
            std::memcpy(p, rbuf_.data() + rpos_, take);
            rpos_ += take;
            p += take;
            n -= take;
            continue;
        }
        int fd = fd_.load();
        if (fd < 0) {
            throw std::runtime_error("connection closed");
        }
        // A large remainder goes straight to its destination; a small one fills the buffer.
        const bool direct = n >= kReadBuffer;
        if (!direct && rbuf_.size() < kReadBuffer) {
            rbuf_.resize(kReadBuffer);
        }
        errno = 0;
        ssize_t got = direct ? receive(fd, p, n) : receive(fd, rbuf_.data(), rbuf_.size());
        if (got > 0) {
            if (direct) {
                p += got;
                n -= static_cast<size_t>(got);
            } else {
                rpos_ = 0;
                rend_ = static_cast<size_t>(got);
            }
        } else if (got == 0) {
            throw std::runtime_error("the server closed the connection");
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            throw std::runtime_error("no data from the server within the read timeout");
        } else {
            throw std::runtime_error(std::string("read failed: ") + std::strerror(errno));
        }
    }
}

void Connection::read(std::string& out) {
    out.clear();
    for (;;) {
        uint8_t h[4];
        readExact(h, 4);
        const size_t len = h[0] | (h[1] << 8) | (h[2] << 16);
        seq_ = static_cast<uint8_t>(h[3] + 1);
        if (out.size() + len > maxPacket_) {
            throw std::runtime_error("packet larger than " + std::to_string(maxPacket_) +
                                     " bytes (max_event_mb)");
        }
        const size_t at = out.size();
        out.resize(at + len);
        readExact(reinterpret_cast<uint8_t*>(out.data() + at), len);
        if (len < kMaxWire) {
            return;
        }
    }
}

void Connection::writePacket(std::string_view payload) {
    int fd = fd_.load();
    size_t off = 0;
    do {
        const size_t n = std::min(payload.size() - off, kMaxWire);
        std::string frame;
        putLe(frame, n, 3);
        frame += static_cast<char>(seq_++);
        frame.append(payload.substr(off, n));
        size_t sent = 0;
        while (sent < frame.size()) {
            errno = 0;
            ssize_t w = transmit(fd, frame.data() + sent, frame.size() - sent);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
            }
            sent += static_cast<size_t>(w);
        }
        off += n;
        if (n < kMaxWire) {
            break;
        }
    } while (true);
}

void Connection::send(uint8_t command, const std::string& payload) {
    seq_ = 0;
    std::string p;
    p.reserve(payload.size() + 1);
    p += static_cast<char>(command);
    p += payload;
    writePacket(p);
}

std::vector<Connection::Row> Connection::query(const std::string& sql,
                                               std::vector<std::string>* names) {
    send(kQuery, sql);
    std::string pkt;
    read(pkt);
    if (pkt.empty()) {
        throw std::runtime_error("empty answer to a query");
    }
    const auto first = static_cast<uint8_t>(pkt[0]);
    if (first == kErr) {
        raise(pkt);
    }
    std::vector<Row> rows;
    if (first == kOk) {
        return rows;
    }
    PacketReader c(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
    const uint64_t columns = c.lenenc();
    if (!c.ok() || columns == 0 || columns > 4096) {
        throw std::runtime_error("damaged result set header");
    }
    if (names != nullptr) {
        names->clear();
    }
    for (uint64_t i = 0; i < columns; ++i) {
        read(pkt);  // a column definition: catalog, schema, table, org_table, name...
        if (names != nullptr) {
            PacketReader d(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
            for (int skip = 0; skip < 4; ++skip) {
                d.lenencString(maxPacket_);
            }
            std::string name = d.lenencString(maxPacket_);
            if (!d.ok()) {
                throw std::runtime_error("damaged column definition");
            }
            names->push_back(std::move(name));
        }
    }
    read(pkt);  // EOF after the definitions
    for (;;) {
        read(pkt);
        const auto b = pkt.empty() ? kErr : static_cast<uint8_t>(pkt[0]);
        if (b == kErr) {
            raise(pkt);
        }
        if (b == kEof && pkt.size() < 9) {
            return rows;
        }
        PacketReader r(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
        Row row;
        for (uint64_t i = 0; i < columns; ++i) {
            if (r.left() > 0 && *r.here() == mysql::kLenencNull) {
                r.skip(1);
                row.emplace_back(std::nullopt);
            } else {
                row.emplace_back(r.lenencString(maxPacket_));
            }
        }
        if (!r.ok()) {
            throw std::runtime_error("damaged row in a result set");
        }
        rows.push_back(std::move(row));
    }
}

std::string sqlQuote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\0') {
            out += "\\0";
            continue;
        }
        if (c == '\'' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out + "'";
}

void parseOk(const std::string& pkt, Response& r) {
    PacketReader p(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
    p.skip(1);
    r.affectedRows += p.lenenc();
    r.lastInsertId = p.lenenc();
    r.status = static_cast<uint16_t>(p.le(2));
    r.warnings = static_cast<uint16_t>(r.warnings + p.le(2));
    if (r.kind == Response::None) {
        r.kind = Response::Ok;
    }
}

void parseErr(const std::string& pkt, Response& r) {
    PacketReader p(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
    p.skip(1);
    r.kind = Response::Error;
    r.errorCode = static_cast<uint16_t>(p.le(2));
    r.sqlState.clear();
    if (p.left() > 0 && *p.here() == '#') {
        p.skip(1);
        r.sqlState = p.has(5) ? std::string(reinterpret_cast<const char*>(p.here()), 5) : "";
        p.skip(5);
    }
    r.errorMessage = p.rest(512);
}

uint16_t Connection::skipUntilEof(std::string& pkt, uint64_t* rows) {
    for (;;) {
        read(pkt);
        const auto b = pkt.empty() ? kErr : static_cast<uint8_t>(pkt[0]);
        if (b == kErr) {
            return 0xffff;  // an ERR in place of the rest: the caller reads it from pkt
        }
        if (b == kEof && pkt.size() < 9) {
            PacketReader r(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
            r.skip(1 + 2);  // header, warnings
            return static_cast<uint16_t>(r.le(2));
        }
        if (rows != nullptr) {
            ++*rows;
        }
    }
}

Response Connection::command(std::string_view packet) {
    Response resp;
    if (packet.empty()) {
        throw std::runtime_error("empty command packet");
    }
    const auto cmd = static_cast<uint8_t>(packet[0]);
    seq_ = 0;
    writePacket(packet);
    if (cmd == kStmtClose || cmd == kStmtSendLongData) {
        return resp;
    }
    if (cmd == kQuit) {
        close();
        return resp;
    }
    std::string pkt;
    read(pkt);
    readResponse(cmd, pkt, resp);
    return resp;
}

void Connection::readResponse(uint8_t cmd, std::string& pkt, Response& resp) {
    for (;;) {  // one result per round
        const auto first = pkt.empty() ? kErr : static_cast<uint8_t>(pkt[0]);
        if (first == kErr) {
            parseErr(pkt, resp);
            return;
        }
        if (cmd == kStatistics) {
            resp.kind = Response::Ok;
            return;
        }
        if (cmd == kStmtFetch || cmd == kFieldList) {
            // Rows (fetch) or definitions (field list) up to an EOF; the first is already here.
            if (first == kEof && pkt.size() < 9) {
                resp.kind = Response::ResultSet;
                return;
            }
            uint64_t n = 1;
            uint16_t st = skipUntilEof(pkt, &n);
            if (st == 0xffff) {
                parseErr(pkt, resp);
                return;
            }
            resp.kind = Response::ResultSet;
            resp.rows += cmd == kStmtFetch ? n : 0;
            resp.status = st;
            return;
        }
        if (cmd == kStmtPrepare && first == kOk) {
            PacketReader r(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
            r.skip(1);
            resp.kind = Response::Prepared;
            resp.statementId = static_cast<uint32_t>(r.le(4));
            resp.columns = static_cast<uint16_t>(r.le(2));
            resp.params = static_cast<uint16_t>(r.le(2));
            r.skip(1);
            resp.warnings = static_cast<uint16_t>(r.le(2));
            for (int part = 0; part < 2; ++part) {
                if ((part == 0 ? resp.params : resp.columns) != 0 &&
                    skipUntilEof(pkt, nullptr) == 0xffff) {
                    throw std::runtime_error("ERR inside a prepare's definitions");
                }
            }
            return;
        }
        if (first == kOk) {
            parseOk(pkt, resp);
        } else if (first == kEof && pkt.size() < 9) {  // COM_SET_OPTION's answer: an EOF
            PacketReader r(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
            r.skip(1);
            resp.warnings = static_cast<uint16_t>(r.le(2));
            resp.status = static_cast<uint16_t>(r.le(2));
            resp.kind = resp.kind == Response::None ? Response::Ok : resp.kind;
        } else if (first == kLocalInfile) {
            // The server asks for a client file: this client sends none (an empty file).
            writePacket(std::string_view());
            read(pkt);
            continue;
        } else {
            PacketReader c(reinterpret_cast<const uint8_t*>(pkt.data()), pkt.size());
            const uint64_t columns = c.lenenc();
            if (!c.ok() || columns == 0) {
                throw std::runtime_error("damaged result set header");
            }
            resp.kind = Response::ResultSet;
            ++resp.resultSets;
            uint16_t st = skipUntilEof(pkt, nullptr);  // column definitions
            if (st == 0xffff) {
                parseErr(pkt, resp);
                return;
            }
            if ((st & kCursorExists) == 0 || cmd != kStmtExecute) {
                st = skipUntilEof(pkt, &resp.rows);
                if (st == 0xffff) {
                    parseErr(pkt, resp);
                    return;
                }
            }
            resp.status = st;
        }
        if ((resp.status & kMoreResults) == 0) {
            return;
        }
        read(pkt);
    }
}

Response Connection::changeUser(const std::string& user, const std::string& password,
                                const std::string& schema) {
    std::string auth = nativePasswordScramble(password, salt_);
    std::string p;
    p += static_cast<char>(kChangeUser);
    p += user;
    p += '\0';
    p += static_cast<char>(auth.size());
    p += auth;
    p += schema;
    p += '\0';
    putLe(p, collation_, 2);
    p += kNativePassword;
    p += '\0';
    seq_ = 0;
    writePacket(p);
    Response resp;
    finishAuth("change user", password, &resp, kNativePassword, salt_);
    return resp;
}

}  // namespace mp::mysql
