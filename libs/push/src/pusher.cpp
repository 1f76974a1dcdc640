// SPDX-License-Identifier: Apache-2.0
#include <Poco/Buffer.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/WebSocket.h>
#include <mp/abi.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <mp/hostport.hpp>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <mp/ws_client.hpp>
#include <mutex>
#include <stdexcept>

namespace mp::push {

using Clock = std::chrono::steady_clock;

namespace {

// One client context per CA file, made once: TLS 1.2 or newer, the server's certificate and
// name checked (a failure is an exception, never a question to a user).
Poco::Net::Context::Ptr clientContext(const std::string& caFile) {
    static std::once_flag once;
    std::call_once(once, [] {
        Poco::Net::initializeSSL();
        Poco::Net::SSLManager::instance().initializeClient(
            nullptr, new Poco::Net::RejectCertificateHandler(false),
            new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", "",
                                   Poco::Net::Context::VERIFY_RELAXED, 9, true));
    });
    static std::mutex mutex;
    static std::map<std::string, Poco::Net::Context::Ptr> contexts;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = contexts.find(caFile);
    if (it != contexts.end()) {
        return it->second;
    }
    Poco::Net::Context::Params p;
    p.caLocation = caFile;
    p.verificationMode = Poco::Net::Context::VERIFY_RELAXED;
    p.loadDefaultCAs = caFile.empty();
    p.cipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4";
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
    ctx->disableProtocols(Poco::Net::Context::PROTO_SSLV2 | Poco::Net::Context::PROTO_SSLV3 |
                          Poco::Net::Context::PROTO_TLSV1 | Poco::Net::Context::PROTO_TLSV1_1);
    contexts[caFile] = ctx;
    return ctx;
}

// An HTTPS session over a socket already connected (from a chosen source address, within a
// connect timeout): Poco 1.11's constructor from a socket sets the port of a connected session
// and throws, so the socket is attached after host and port are set.
class ConnectedHttps : public Poco::Net::HTTPSClientSession {
  public:
    ConnectedHttps(Poco::Net::Context::Ptr ctx, const std::string& host, uint16_t port,
                   const Poco::Net::SecureStreamSocket& sock)
        : HTTPSClientSession(ctx) {
        setHost(host);
        setPort(port);
        attachSocket(sock);
    }
};

}  // namespace

std::unique_ptr<Poco::Net::HTTPClientSession> openHttpSession(
    const std::string& sourceIp, const std::string& host, uint16_t port,
    std::chrono::milliseconds connectTimeout, std::chrono::milliseconds ioTimeout,
    const TlsClient& tls) {
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    if (tls.enabled) {
        // TCP first (a secure socket cannot be bound to a source), then TLS over it; the
        // handshake and the certificate check happen on the first write.
        Poco::Net::StreamSocket tcp(Poco::Net::SocketAddress(host, port).family());
        if (!sourceIp.empty()) {
            tcp.impl()->bind(Poco::Net::SocketAddress(sourceIp, 0));
        }
        tcp.connect(Poco::Net::SocketAddress(host, port),
                    Poco::Timespan(connectTimeout.count() * 1000));
        tcp.setReceiveTimeout(Poco::Timespan(ioTimeout.count() * 1000));  // the handshake too
        tcp.setSendTimeout(Poco::Timespan(ioTimeout.count() * 1000));
        Poco::Net::Context::Ptr ctx = clientContext(tls.caFile);
        Poco::Net::SecureStreamSocket sock = Poco::Net::SecureStreamSocket::attach(tcp, host, ctx);
        session = std::make_unique<ConnectedHttps>(ctx, host, port, sock);
    } else if (sourceIp.empty()) {
        session = std::make_unique<Poco::Net::HTTPClientSession>(host, port);
    } else {
        Poco::Net::StreamSocket sock(Poco::Net::SocketAddress::IPv4);
        sock.impl()->bind(Poco::Net::SocketAddress(sourceIp, 0));
        sock.connect(Poco::Net::SocketAddress(host, port),
                     Poco::Timespan(connectTimeout.count() * 1000));
        session = std::make_unique<Poco::Net::HTTPClientSession>(sock);
    }
    session->setTimeout(Poco::Timespan(ioTimeout.count() * 1000));
    return session;
}

Pusher::Server Pusher::parseServer(const std::string& text) {
    std::string s = text;
    bool tls = false;
    if (s.rfind("ws://", 0) == 0) {
        s = s.substr(5);
    } else if (s.rfind("wss://", 0) == 0) {
        s = s.substr(6);
        tls = true;
    }
    if (!s.empty() && s.back() == '/') {
        s.pop_back();
    }
    auto hp = mp::net::parseHostPort(s);
    if (!hp) {
        throw std::invalid_argument(
            "pusher server must be host:port, ws://host:port or wss://host:port with a port "
            "1..65535: " +
            text);
    }
    Server out;
    out.host = hp->host;
    out.port = hp->port;
    out.tls = tls;
    return out;
}

Pusher::Pusher(PusherOptions options, Log log, Stats stats)
    : options_(std::move(options)), log_(std::move(log)), statsFn_(std::move(stats)) {
    for (const auto& s : options_.servers) {
        servers_.push_back(parseServer(s));
    }
    if (options_.path.empty() || options_.path[0] != '/') {
        options_.path = "/" + options_.path;
    }
    if (options_.bufferReports == 0) {
        options_.bufferReports = 1;
    }
}

Pusher::~Pusher() { stop(); }

void Pusher::start() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_) {
        return;
    }
    started_ = true;
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
}

void Pusher::stop() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!started_) {
            return;
        }
        stopping_ = true;
        stopDeadline_ = Clock::now() + options_.drainTimeout;
    }
    cv_.notify_all();
    thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = false;
    if (!items_.empty()) {
        log_(MP_LOG_WARN,
             "pusher: " + std::to_string(items_.size()) + " report(s) not acknowledged at stop");
    }
}

void Pusher::push(uint64_t seq, Encoded message) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (items_.size() >= options_.bufferReports) {
            items_.pop_front();  // the oldest gives way (counted)
            ++stats_.dropped;
            if (sentOnConn_ > 0) {
                --sentOnConn_;
            }
        }
        items_.push_back(Item{seq, std::move(message), false, {}});
    }
    cv_.notify_all();
}

void Pusher::setServers(const std::vector<std::string>& servers) {
    std::vector<Server> parsed;
    for (const auto& s : servers) {
        parsed.push_back(parseServer(s));
    }
    {
        std::lock_guard<std::mutex> lock(mutex_);
        bool same = parsed.size() == servers_.size() &&
                    std::equal(parsed.begin(), parsed.end(), servers_.begin(),
                               [](const Server& a, const Server& b) {
                                   return a.host == b.host && a.port == b.port;
                               });
        if (same) {
            return;
        }
        servers_ = std::move(parsed);
        current_ = 0;
        retarget_ = true;
        nextAttempt_ = Clock::now();
    }
    cv_.notify_all();
}

PusherStats Pusher::stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

void Pusher::publish() {
    if (statsFn_) {
        statsFn_(stats_);
    }
}

bool Pusher::connect() {
    // Every server once, starting with the current one; the first that answers wins.
    std::vector<Server> servers;
    size_t current = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        servers = servers_;
        current = current_;
    }
    for (size_t n = 0; n < servers.size(); ++n) {
        size_t i = (current + n) % servers.size();
        const Server& s = servers[i];
        try {
            std::unique_ptr<Poco::Net::HTTPClientSession> session = openHttpSession(
                options_.sourceIp, s.host, s.port, options_.connectTimeout, options_.connectTimeout,
                TlsClient{options_.tls.enabled || s.tls, options_.tls.caFile});
            Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, options_.path,
                                       Poco::Net::HTTPMessage::HTTP_1_1);
            req.setHost(s.host, s.port);  // a session made from a socket knows no host
            if (!options_.authorization.empty()) {
                req.set("Authorization", options_.authorization);
            }
            Poco::Net::HTTPResponse resp;
            auto ws = std::make_unique<Poco::Net::WebSocket>(*session, req, resp);
            ws->setSendTimeout(Poco::Timespan(options_.writeTimeout.count() * 1000));
            ws->setReceiveTimeout(Poco::Timespan(0, 1000));
            ws->setMaxPayloadSize(static_cast<int>(
                std::clamp<size_t>(options_.maxReceivedBytes, 126, size_t{1} << 30)));
            ws->setBlocking(true);
            std::lock_guard<std::mutex> lock(mutex_);
            session_ = std::move(session);
            socket_ = std::move(ws);
            current_ = i;
            connectedTo_ = s.host + ":" + std::to_string(s.port);
            stats_.connected = 1;
            log_(MP_LOG_INFO,
                 "pusher: connected to " + s.host + ":" + std::to_string(s.port) + options_.path);
            return true;
        } catch (const std::exception& e) {
            std::lock_guard<std::mutex> lock(mutex_);
            ++stats_.failures;
            log_(MP_LOG_WARN,
                 "pusher: " + s.host + ":" + std::to_string(s.port) + " failed: " + e.what());
        }
    }
    return false;
}

void Pusher::disconnect() {
    if (socket_) {
        try {
            socket_->close();
        } catch (const std::exception&) {
            // already broken
        }
    }
    socket_.reset();
    session_.reset();
    stats_.connected = 0;
    sentOnConn_ = 0;  // a new connection starts again from the oldest unacknowledged report
}

void Pusher::ack(uint64_t seq) {
    while (!items_.empty() && items_.front().seq <= seq && sentOnConn_ > 0) {
        items_.pop_front();
        --sentOnConn_;
        ++stats_.acked;
    }
}

// Reads whatever the server sent (pongs, acks) without blocking long. Throws when it broke.
void Pusher::readAcks() {
    Poco::Buffer<char> buf(0);
    while (socket_ && socket_->poll(Poco::Timespan(0), Poco::Net::Socket::SELECT_READ)) {
        ClientFrame f = readClientFrame(*socket_, buf);  // pings are answered in there
        if (f.kind == ClientFrame::Kind::TooBig) {
            try {  // say why before the caller drops the connection
                socket_->shutdown(Poco::Net::WebSocket::WS_PAYLOAD_TOO_BIG, "frame too big");
            } catch (const std::exception&) {
                // the connection is gone already
            }
            throw Poco::Net::WebSocketException("the server sent a frame larger than " +
                                                    std::to_string(socket_->getMaxPayloadSize()) +
                                                    " bytes",
                                                Poco::Net::WebSocket::WS_ERR_PAYLOAD_TOO_BIG);
        }
        if (f.kind == ClientFrame::Kind::Closed) {
            throw Poco::Net::ConnectionResetException(f.opcode == 0 ? "server closed the connection"
                                                                    : "server sent close");
        }
        int op = f.opcode;
        std::string_view body = f.payload;
        uint64_t seq = 0;
        if (op == Poco::Net::WebSocket::FRAME_OP_PONG && options_.ack == AckMode::Pong) {
            std::from_chars(body.data(), body.data() + body.size(), seq);
        } else if (op == Poco::Net::WebSocket::FRAME_OP_TEXT && options_.ack == AckMode::Message) {
            // {"ack":SEQ}: no JSON library needed for one number.
            size_t at = body.find("\"ack\"");
            if (at != std::string_view::npos) {
                at = body.find(':', at);
                while (at != std::string_view::npos && at + 1 < body.size() &&
                       (body[at + 1] == ' ' || body[at + 1] == ':')) {
                    ++at;
                }
                if (at != std::string_view::npos && at + 1 < body.size()) {
                    std::from_chars(body.data() + at + 1, body.data() + body.size(), seq);
                }
            }
        }
        if (seq != 0) {
            std::lock_guard<std::mutex> lock(mutex_);
            ack(seq);
        }
    }
}

// Writes every report not yet written on this connection, then a ping carrying the last seq.
bool Pusher::sendPending(std::unique_lock<std::mutex>& lock) {
    while (sentOnConn_ < items_.size()) {
        Item& it = items_[sentOnConn_];
        // Copy out: the buffer may drop the oldest while the lock is released for the write.
        Encoded msg = it.msg;
        uint64_t seq = it.seq;
        bool again = it.sentBefore;
        it.sentBefore = true;
        mp::report::ResentNotice notice{seq, {}};
        if (options_.announceResends) {
            for (const std::string& s : it.writtenTo) {
                if (s != connectedTo_) {
                    notice.unackedBy.push_back(s);
                }
            }
            if (std::find(it.writtenTo.begin(), it.writtenTo.end(), connectedTo_) ==
                    it.writtenTo.end() &&
                it.writtenTo.size() < 8) {
                it.writtenTo.push_back(connectedTo_);
            }
        }
        ++sentOnConn_;
        lock.unlock();
        int flags =
            static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
            static_cast<int>(msg.opcode == MP_WS_TEXT ? Poco::Net::WebSocket::FRAME_OP_TEXT
                                                      : Poco::Net::WebSocket::FRAME_OP_BINARY);
        bool ok = true;
        try {
            if (!notice.unackedBy.empty()) {
                std::string n = mp::report::encodeResentNotice(notice);
                socket_->sendFrame(n.data(), static_cast<int>(n.size()),
                                   static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                                       static_cast<int>(Poco::Net::WebSocket::FRAME_OP_TEXT));
            }
            socket_->sendFrame(msg.data.data(), static_cast<int>(msg.data.size()), flags);
            if (options_.ack == AckMode::Pong) {
                std::string s = std::to_string(seq);
                socket_->sendFrame(s.data(), static_cast<int>(s.size()),
                                   static_cast<int>(Poco::Net::WebSocket::FRAME_FLAG_FIN) |
                                       static_cast<int>(Poco::Net::WebSocket::FRAME_OP_PING));
            }
        } catch (const std::exception& e) {
            log_(MP_LOG_WARN, std::string("pusher: send failed: ") + e.what());
            ok = false;
        }
        lock.lock();
        if (!ok) {
            return false;
        }
        ++(again ? stats_.retried : stats_.sent);
    }
    return true;
}

void Pusher::run() {
    std::unique_lock<std::mutex> lock(mutex_);
    bool tried = false;
    while (true) {
        const bool draining = stopping_;
        if (draining && (items_.empty() || Clock::now() >= stopDeadline_)) {
            break;
        }
        if (retarget_) {
            // The old server may still acknowledge what it has (it answers after it has kept
            // the reports): listen for that a while before moving, so that a server that is
            // alive does not see its reports again elsewhere.
            auto now = Clock::now();
            if (socket_ && sentOnConn_ > 0 && options_.retargetGrace.count() > 0) {
                if (retargetDeadline_ == Clock::time_point{}) {
                    retargetDeadline_ = now + options_.retargetGrace;
                }
                if (now < retargetDeadline_) {
                    bool broken = false;
                    lock.unlock();
                    try {
                        readAcks();
                    } catch (const std::exception&) {
                        broken = true;
                    }
                    lock.lock();
                    if (!broken && sentOnConn_ > 0) {
                        cv_.wait_for(lock, std::chrono::milliseconds(20));
                        continue;
                    }
                }
            }
            retarget_ = false;
            retargetDeadline_ = Clock::time_point{};
            if (socket_) {
                log_(MP_LOG_INFO, "pusher: server list changed: reconnecting");
                disconnect();
            }
        }
        const bool want =
            !servers_.empty() && (!items_.empty() || (options_.preconnect && !draining));
        if (!socket_ && want && (Clock::now() >= nextAttempt_ || !tried || draining)) {
            lock.unlock();
            bool ok = connect();
            lock.lock();
            tried = true;
            if (!ok) {
                nextAttempt_ = Clock::now() + options_.reconnectPeriod;
            }
            publish();
        }
        if (socket_) {
            bool ok = sendPending(lock);
            if (ok) {
                lock.unlock();
                try {
                    readAcks();
                } catch (const std::exception& e) {
                    log_(MP_LOG_WARN, std::string("pusher: connection lost: ") + e.what());
                    ok = false;
                }
                lock.lock();
            }
            if (!ok) {
                // Fail over: the next server, at once; the unacknowledged reports go again.
                ++stats_.failures;
                disconnect();
                current_ = servers_.empty() ? 0 : (current_ + 1) % servers_.size();
                nextAttempt_ = Clock::now();
            }
            publish();
        }
        // Wake for new reports, acks (polled), reconnect times and stop.
        auto wait = socket_ ? std::chrono::milliseconds(20) : std::chrono::milliseconds(100);
        cv_.wait_for(lock, wait);
    }
    disconnect();
    publish();
}

}  // namespace mp::push
