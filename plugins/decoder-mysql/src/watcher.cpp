// SPDX-License-Identifier: Apache-2.0
#include "watcher.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <map>
#include <mp/hostport.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <stdexcept>

namespace mp::mysql {

uint64_t endpointKey(std::string_view endpoint) {
    uint64_t h = 14695981039346656037ULL;
    for (char c : endpoint) {
        h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
    }
    return h == 0 ? 1 : h;
}

namespace {

// "host:port" to the decoder's "ip:port" of the first address (IPv4 first).
std::string resolve(const net::HostPort& hp) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(hp.host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) {
        throw Error("server: cannot resolve '" + hp.host + "'");
    }
    const addrinfo* pick = res;
    for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    }
    char ip[INET6_ADDRSTRLEN] = {0};
    std::string out;
    if (pick->ai_family == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(pick->ai_addr)->sin_addr, ip,
                    sizeof ip);
        out = std::string(ip) + ":" + std::to_string(hp.port);
    } else if (pick->ai_family == AF_INET6) {
        ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(pick->ai_addr)->sin6_addr, ip,
                    sizeof ip);
        out = "[" + std::string(ip) + "]:" + std::to_string(hp.port);
    }
    ::freeaddrinfo(res);
    if (out.empty()) {
        throw Error("server: '" + hp.host + "' has no IP address");
    }
    return out;
}

}  // namespace

ServerWatcher::ServerWatcher(const std::string& at, std::string user, std::string password, Tls tls,
                             std::string tlsCa) {
    // A host alone means port 3306 (as the original's watcher.address, a Go driver address).
    auto hp = net::parseHostPort(at);
    if (!hp && at.find(':') == std::string::npos) {
        hp = net::parseHostPort(at + ":3306");
    }
    if (!hp) {
        throw Error("server: host:port expected, not '" + at + "'");
    }
    try {
        server_ = resolve(*hp);
    } catch (const std::exception& e) {
        // Not fatal: the probe runs, and every report's coverage says why it has no figures.
        server_ = hp->text();
        unresolved_ = e.what();
    }
    // The address resolved once (the one compared); under verify_identity the name as written,
    // which the certificate must be issued for.
    address_.host = tls == Tls::VerifyIdentity ? hp->host : net::hostOf(server_);
    address_.port = hp->port;
    address_.user = std::move(user);
    address_.password = std::move(password);
    address_.tls = tls;
    address_.tlsCa = std::move(tlsCa);
    address_.connectTimeoutMs = 1000;
    address_.readTimeoutMs = 2000;
    address_.maxPacket = 1 << 20;
}

std::shared_ptr<ServerWatcher> ServerWatcher::shared(const std::string& at, const std::string& user,
                                                     const std::string& password, Tls tls,
                                                     const std::string& tlsCa) {
    static std::mutex mutex;
    static std::map<std::string, std::weak_ptr<ServerWatcher>> watchers;
    const std::lock_guard<std::mutex> lock(mutex);
    const std::string key = at + '\n' + user + '\n' + password + '\n' +
                            std::to_string(static_cast<int>(tls)) + '\n' + tlsCa;
    auto w = watchers[key].lock();
    if (!w) {
        w = std::make_shared<ServerWatcher>(at, user, password, tls, tlsCa);
        watchers[key] = w;
    }
    return w;
}

ServerSessions readSessions(const ServerAddress& a, std::string& note) {
    constexpr uint64_t kMaxStatementBytes = 64ULL << 20;
    ServerSessions out;
    Connection conn;
    conn.connect(a);
    for (const auto& row :
         conn.query("SELECT ID, USER, HOST, DB FROM information_schema.PROCESSLIST")) {
        // TCP clients only: HOST is "ip:port" (a unix socket's is "localhost").
        if (row.size() == 4 && row[0] && row[2] && row[2]->find(':') != std::string::npos) {
            ServerSession& s = out[*row[2]];
            s.id = static_cast<uint32_t>(std::stoul(*row[0]));
            s.user = row[1].value_or("");
            s.schema = row[3].value_or("");
        }
    }
    try {
        std::unordered_map<uint64_t, ServerSession*> byId;
        for (auto& [client, s] : out) {
            byId[s.id] = &s;
        }
        // Bounded by the bytes of their text, on the server's side (a running sum), so that
        // what this reads is bounded whatever the server holds.
        const auto all =
            conn.query("SELECT COUNT(*) FROM performance_schema.prepared_statements_instances");
        const uint64_t listed =
            !all.empty() && !all[0].empty() && all[0][0] ? std::stoull(*all[0][0]) : 0;
        uint64_t read = 0;
        for (const auto& row : conn.query(
                 "SELECT id, stmt, sql_text FROM (SELECT t.PROCESSLIST_ID AS id, p.STATEMENT_ID "
                 "AS stmt, p.SQL_TEXT AS sql_text, SUM(LENGTH(p.SQL_TEXT)) OVER (ORDER BY "
                 "p.OBJECT_INSTANCE_BEGIN) AS upto FROM "
                 "performance_schema.prepared_statements_instances p JOIN "
                 "performance_schema.threads t ON t.THREAD_ID = p.OWNER_THREAD_ID) x WHERE upto "
                 "<= " +
                 std::to_string(kMaxStatementBytes))) {
            ++read;
            if (row.size() == 3 && row[0] && row[1] && row[2]) {
                auto it = byId.find(std::stoull(*row[0]));
                if (it != byId.end()) {
                    it->second->statements[static_cast<uint32_t>(std::stoul(*row[1]))] = *row[2];
                }
            }
        }
        if (read < listed) {
            note = std::to_string(listed - read) + " of " + std::to_string(listed) +
                   " prepared statements past the " + std::to_string(kMaxStatementBytes >> 20) +
                   " MiB bound of their text were not read";
        }
    } catch (const ServerError& e) {
        note = e.what();  // no performance_schema, or no SELECT on it
    }
    return out;
}

std::shared_ptr<const ServerSessions> ServerWatcher::sessions(std::string& why, bool& first) {
    const std::lock_guard<std::mutex> lock(sessionsMutex_);
    first = !sessionsRead_;
    if (sessionsRead_) {
        return sessions_;
    }
    sessionsRead_ = true;
    if (!unresolved_.empty()) {
        why = unresolved_;
        return nullptr;
    }
    try {
        ServerAddress a = address_;
        a.connectTimeoutMs = 3000;
        a.readTimeoutMs = 10000;
        a.maxPacket = 256u << 20;
        std::string note;
        sessions_ = std::make_shared<const ServerSessions>(readSessions(a, note));
        if (!note.empty()) {
            why = "its prepared statements: " + note;
        }
    } catch (const std::exception& e) {
        why = e.what();
    }
    return sessions_;
}

StatusCounters ServerWatcher::read(StatusCounters& own) {
    if (!unresolved_.empty()) {
        throw std::runtime_error(unresolved_);
    }
    if (!conn_.connected()) {
        const auto now = std::chrono::steady_clock::now();
        if (now < nextTry_) {
            throw std::runtime_error(
                lastError_ + " (next try in " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::seconds>(nextTry_ - now).count() + 1) +
                " s)");
        }
        try {
            conn_.connect(address_);
            // Published before any command: the workers leave this connection out.
            ownKey_.store(endpointKey(conn_.localAddress()), std::memory_order_release);
            own_.clear();
        } catch (const std::exception& e) {
            conn_.close();
            lastError_ = e.what();
            nextTry_ = now + retry;
            throw;
        }
    }
    std::string sql = "SHOW GLOBAL STATUS WHERE Variable_name IN (";
    bool first = true;
    for (const auto& name : coverageCounters()) {
        sql += first ? "'" : ", '";
        first = false;
        sql += name + "'";
    }
    sql += ")";
    // Counted before it is sent: the server counts it in the reading it answers.
    ++own_["Questions"];
    ++own_["Com_show_status"];
    StatusCounters out;
    try {
        for (const auto& row : conn_.query(sql)) {
            if (row.size() == 2 && row[0] && row[1]) {
                out[*row[0]] = std::stoull(*row[1]);
            }
        }
    } catch (const std::exception& e) {
        conn_.close();
        lastError_ = std::string("reading ") + server_ + "'s status: " + e.what();
        nextTry_ = std::chrono::steady_clock::now();  // reconnect at the next report
        throw std::runtime_error(lastError_);
    }
    if (out.count("Questions") == 0) {
        throw std::runtime_error(server_ + ": SHOW GLOBAL STATUS has no Questions counter");
    }
    own.swap(own_);
    own_.clear();
    return out;
}

}  // namespace mp::mysql
