// SPDX-License-Identifier: Apache-2.0
// The little of the MySQL client protocol a replica needs, on a blocking socket: the handshake
// with mysql_native_password, text queries and their result sets, commands, and whole packets
// (a packet of 16 MiB - 1 continues in the next). Every read is bounded by the packet's length
// and by `max_packet`; a read waits at most the read timeout (the server's heartbeats keep an
// idle stream talking), so a cut network is noticed.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mp::binlog {

struct ServerAddress {
    std::string host = "127.0.0.1";
    uint16_t port = 3306;
    std::string user;
    std::string password;  // a secret: never in an error or a log line
    int connectTimeoutMs = 5000;
    int readTimeoutMs = 30000;
    size_t maxPacket = 256u << 20;
};

/// An error the server sent (ERR packet): its code and message.
class ServerError : public std::runtime_error {
  public:
    ServerError(uint16_t code, std::string state, const std::string& message)
        : std::runtime_error(message), code_(code), state_(std::move(state)) {}
    uint16_t code() const { return code_; }
    const std::string& sqlState() const { return state_; }

  private:
    uint16_t code_;
    std::string state_;
};

class Connection {
  public:
    using Row = std::vector<std::optional<std::string>>;

    Connection() = default;
    ~Connection() { close(); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    /// Connects and logs in; throws ServerError (refused login...) or std::runtime_error
    /// (network, protocol) with one line.
    void connect(const ServerAddress& a);
    void close();
    /// From another thread: a blocked read returns (with an error) at once.
    void interrupt();
    bool connected() const { return fd_.load() >= 0; }

    /// A text query; the rows of its result set (none for a statement). Throws ServerError.
    std::vector<Row> query(const std::string& sql);
    /// Sends one command packet (command byte and its payload), a new sequence.
    void send(uint8_t command, const std::string& payload);
    /// Reads one whole packet (continuations joined) into `out`.
    void read(std::string& out);
    /// Throws the ServerError an ERR packet holds.
    [[noreturn]] static void raise(const std::string& err);

    const std::string& serverVersion() const { return version_; }
    bool mariadb() const { return version_.find("MariaDB") != std::string::npos; }
    uint32_t connectionId() const { return connectionId_; }

  private:
    void writePacket(const std::string& payload);
    void readExact(uint8_t* p, size_t n);

    std::atomic<int> fd_{-1};
    uint8_t seq_ = 0;
    size_t maxPacket_ = 256u << 20;
    std::string version_;
    uint32_t connectionId_ = 0;
};

/// Appends `v` as `n` little-endian bytes (packet fields).
inline void putLe(std::string& out, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        out += static_cast<char>((v >> (8 * i)) & 0xff);
    }
}

/// mysql_native_password: SHA1(password) XOR SHA1(salt + SHA1(SHA1(password))).
std::string nativePasswordScramble(const std::string& password, const std::string& salt);

}  // namespace mp::binlog
