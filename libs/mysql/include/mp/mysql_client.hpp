// SPDX-License-Identifier: Apache-2.0
// The little of the MySQL client protocol that source-binlog (a replica) and replay-mysql (a
// replayer) need, on a blocking socket: the handshake with mysql_native_password (in TLS when
// asked, as the MySQL clients' --ssl-mode: required, verify_ca, verify_identity), text queries
// and their result sets, any command sent as it was captured and its whole response read
// (result sets counted, not kept), change-user, and whole packets (a packet of 16 MiB - 1
// continues in the next). Every read is bounded by the packet's length and by `max_packet`; a
// read waits at most the read timeout, so a cut network is noticed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct ssl_ctx_st;  // OpenSSL's SSL_CTX and SSL, not included here
struct ssl_st;

namespace mp::mysql {

/// TLS to the server, as the MySQL clients' --ssl-mode: Off (plain), Required (encrypted, the
/// certificate not checked), VerifyCa (signed by a trusted CA), VerifyIdentity (and issued for
/// the host connected to: its name or address in the certificate). TLS 1.2 at least.
enum class Tls { Off, Required, VerifyCa, VerifyIdentity };
/// "off", "required", "verify_ca", "verify_identity"; nullopt for anything else.
std::optional<Tls> parseTls(std::string_view name);

struct ServerAddress {
    std::string host = "127.0.0.1";
    uint16_t port = 3306;
    std::string user;
    std::string password;  // a secret: never in an error or a log line
    int connectTimeoutMs = 5000;
    int readTimeoutMs = 30000;
    size_t maxPacket = 256u << 20;
    // For a replayer: the default schema at login, the client's collation (0: utf8mb4) and the
    // capability flags that change what the server does (CLIENT_FOUND_ROWS, IGNORE_SPACE,
    // MULTI_STATEMENTS...), added to the ones this client always asks for.
    std::string schema;
    uint8_t collation = 0;
    uint32_t extraCapabilities = 0;
    Tls tls = Tls::Off;
    std::string
        tlsCa;  // PEM file of the CAs trusted (VerifyCa, VerifyIdentity); empty: the system's
};

/// The capability flags a replayer may copy from a captured client (they change results, not
/// the framing this client reads): FOUND_ROWS, NO_SCHEMA, IGNORE_SPACE, INTERACTIVE,
/// MULTI_STATEMENTS.
constexpr uint32_t kSemanticCapabilities = 0x2 | 0x10 | 0x100 | 0x400 | 0x10000;

/// What the server answered to one command.
struct Response {
    enum Kind { None, Ok, Error, ResultSet, Prepared } kind = None;
    uint16_t errorCode = 0;
    std::string sqlState;
    std::string errorMessage;   // at most 512 bytes
    uint64_t rows = 0;          // rows of every result set
    uint64_t affectedRows = 0;  // summed over the results
    uint64_t lastInsertId = 0;
    uint32_t resultSets = 0;
    uint16_t warnings = 0;
    uint16_t status = 0;       // of the last OK/EOF
    uint32_t statementId = 0;  // Prepared: the new statement's id
    uint16_t params = 0;       // Prepared
    uint16_t columns = 0;      // Prepared
};

/// An error the server answered (its code and SQL state), or one the client reports in the
/// server's terms: kAuthPluginError when the login cannot go on as the server asks (a plugin not
/// spoken, a password that would leave in clear), as MySQL's own clients do (CR_AUTH_PLUGIN_ERR).
class ServerError : public std::runtime_error {
  public:
    ServerError(uint16_t code, std::string state, const std::string& message)
        : std::runtime_error(message), code_(code), state_(std::move(state)) {}
    static constexpr uint16_t kAuthPluginError = 2061;
    uint16_t code() const { return code_; }
    const std::string& sqlState() const { return state_; }

  private:
    uint16_t code_;
    std::string state_;
};

/// TLS cannot be had as asked: the server offers none, refuses the versions, or its certificate
/// is not trusted (or not for this host), or the CA file cannot be read. For the operator to
/// mend (a configuration), where a network failure is for a retry.
class TlsError : public std::runtime_error {
  public:
    /// What to mend: the server (it offers no TLS), the CA trusted (the certificate is not
    /// signed by it), the host dialled (the certificate is for another), or the set-up (a CA
    /// file, the TLS versions).
    enum class Reason { NotOffered, Untrusted, WrongHost, Setup };
    TlsError(Reason reason, const std::string& what) : std::runtime_error(what), reason_(reason) {}
    Reason reason() const { return reason_; }

  private:
    Reason reason_;
};

class Connection {
  public:
    using Row = std::vector<std::optional<std::string>>;

    Connection() = default;
    ~Connection() { close(); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Connects and logs in; throws ServerError (refused login...), TlsError, or
    /// std::runtime_error (network, protocol) with one line.
    void connect(const ServerAddress& a);
    void close();
    /// From another thread: a blocked read returns (with an error) at once.
    void interrupt();
    bool connected() const { return fd_.load() >= 0; }
    /// The TLS version and cipher in use ("TLSv1.3 TLS_AES_256_GCM_SHA384"); empty in plain.
    std::string tlsSession() const;

    /// A text query; the rows of its result set (none for a statement), and the column names
    /// into `names` when given. Throws ServerError.
    std::vector<Row> query(const std::string& sql, std::vector<std::string>* names = nullptr);
    /// Sends one command packet (command byte and its payload), a new sequence.
    void send(uint8_t command, const std::string& payload);
    /// Sends a whole command packet (its first byte is the command) and reads the whole
    /// response: OK, ERR, result sets (several with SERVER_MORE_RESULTS_EXISTS; a cursor's
    /// empty one), a prepare's definitions, LOCAL INFILE (answered with an empty file).
    /// Commands without a response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT) return
    /// kind None at once. Throws std::runtime_error on a network or protocol failure (the
    /// connection is then unusable), never for an ERR: that is the response.
    Response command(std::string_view packet);
    /// COM_CHANGE_USER with this client's scramble for `password`; the server's answer (an
    /// auth switch is followed). The login collation stays.
    Response changeUser(const std::string& user, const std::string& password,
                        const std::string& schema);
    /// Reads one whole packet (continuations joined) into `out`.
    void read(std::string& out);
    /// Throws the ServerError an ERR packet holds.
    [[noreturn]] static void raise(const std::string& err);

    const std::string& serverVersion() const { return version_; }
    bool mariadb() const { return version_.find("MariaDB") != std::string::npos; }
    uint32_t connectionId() const { return connectionId_; }
    /// This connection's addresses as "ip:port" ("[ip]:port" for IPv6), written as the probe
    /// names the endpoints of a captured connection; empty when not connected.
    std::string localAddress() const { return address(true); }
    std::string peerAddress() const { return address(false); }

  private:
    std::string address(bool local) const;
    /// After the server's handshake: the SSL request, then TLS over the socket (throws).
    void startTls(const ServerAddress& a, const std::string& where, uint32_t caps);
    /// recv()/send() on the socket, or through TLS once it is up; recv's result and errno.
    ssize_t receive(int fd, void* p, size_t n);
    ssize_t transmit(int fd, const char* p, size_t n);  // SIGPIPE: the host ignores it
    void writePacket(std::string_view payload);
    void readExact(uint8_t* p, size_t n);
    /// After the first packet of a response: the rest of it into `resp`.
    void readResponse(uint8_t command, std::string& pkt, Response& resp);
    /// Reads packets until an EOF (the end of definitions or rows); rows counted when `rows`.
    uint16_t skipUntilEof(std::string& pkt, uint64_t* rows);
    /// Follows an auth exchange after a login or change-user packet, sent for `plugin` with
    /// `nonce`: auth switches (mysql_native_password, caching_sha2_password) and
    /// caching_sha2_password's fast or full authentication.
    void finishAuth(const std::string& where, const std::string& password, Response* resp,
                    std::string plugin, std::string nonce);

    std::atomic<int> fd_{-1};
    ssl_ctx_st* tlsContext_ = nullptr;  // OpenSSL's SSL_CTX and SSL, owned; used by the thread
    ssl_st* tls_ = nullptr;             // that reads and writes, never by interrupt()
    uint8_t seq_ = 0;
    size_t maxPacket_ = 256u << 20;
    std::string version_;
    uint32_t connectionId_ = 0;
    uint8_t collation_ = 45;
    std::string salt_;
    std::vector<uint8_t> rbuf_;  // bytes received, not yet read: [rpos_, rend_)
    size_t rpos_ = 0;
    size_t rend_ = 0;
};

/// Parses an OK packet (first byte 0x00 or 0xfe) into `r`; an ERR packet (0xff).
void parseOk(const std::string& pkt, Response& r);
void parseErr(const std::string& pkt, Response& r);

/// Appends `v` as `n` little-endian bytes (packet fields).
inline void putLe(std::string& out, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        out += static_cast<char>((v >> (8 * i)) & 0xff);
    }
}

/// mysql_native_password: SHA1(password) XOR SHA1(salt + SHA1(SHA1(password))).
std::string nativePasswordScramble(const std::string& password, const std::string& salt);
/// caching_sha2_password's fast path: SHA256(password) XOR
/// SHA256(SHA256(SHA256(password)) + nonce). "" for an empty password.
std::string cachingSha2Scramble(const std::string& password, const std::string& nonce);

/// A string as an SQL literal: '...' with quotes and backslashes escaped and NUL as \0
/// (NO_BACKSLASH_ESCAPES not assumed).
std::string sqlQuote(const std::string& s);

}  // namespace mp::mysql
