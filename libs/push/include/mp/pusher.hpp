// SPDX-License-Identifier: Apache-2.0
// Shared by sink-websocket (pushing reports to collectors) and cluster-gossip (a slave pushing
// to the current master, which changes with setServers()).
// The pusher: sends every report to one reachable server of a list (ws://host:port), in order,
// keeping what is not yet acknowledged in a bounded buffer so that a server failure loses
// nothing: the next server gets the unacknowledged reports again (receivers drop duplicates by
// the report's sequence number).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace Poco::Net {
class WebSocket;
class HTTPClientSession;
}  // namespace Poco::Net

namespace mp::push {

/// One message ready for the wire.
struct Encoded {
    uint32_t opcode = 0;  // MP_WS_TEXT or MP_WS_BINARY
    std::string data;
};

/// TLS for a connection this node makes: off, or on with the server's certificate checked
/// against `caFile` (PEM; "": the system's CAs) and against the name or address it was dialled by.
struct TlsClient {
    bool enabled = false;
    std::string caFile;
};

/// An HTTP(S) session to host:port, its connection from `sourceIp` ("" : the kernel's choice),
/// bounded by `connectTimeout` and `ioTimeout`. Throws Poco's exceptions
/// (ConnectionRefusedException when nothing listens there, SSLException when the server's
/// certificate does not verify). Shared by the pusher, cluster-static's master and
/// cluster-gossip's questions to masters. A session made on a connected socket knows no host:
/// set the request's Host (HTTPRequest::setHost) yourself.
std::unique_ptr<Poco::Net::HTTPClientSession> openHttpSession(
    const std::string& sourceIp, const std::string& host, uint16_t port,
    std::chrono::milliseconds connectTimeout, std::chrono::milliseconds ioTimeout,
    const TlsClient& tls = {});

enum class AckMode {
    Pong,     // a pong to a ping sent after a report acknowledges it (any RFC 6455 receiver)
    Message,  // the receiver answers {"ack":SEQ} once it has kept report SEQ (exact)
};

struct PusherOptions {
    std::vector<std::string> servers;  // host:port, ws://host:port, or wss://host:port (TLS)
    TlsClient tls;  // enabled: every server over TLS; caFile: what verifies the servers
    std::string path = "/";
    std::string sourceIp;  // bind outgoing connections to this address ("" : the kernel's choice)
    /// Authorization header value sent with the upgrade ("Bearer ..."; "" : none). A secret:
    /// never logged, never put in the URL.
    std::string authorization;
    bool preconnect = false;
    std::chrono::milliseconds connectTimeout{1000};
    std::chrono::milliseconds writeTimeout{1000};
    std::chrono::milliseconds reconnectPeriod{10000};
    std::chrono::milliseconds drainTimeout{2000};  // at stop: time to deliver what is left
    size_t bufferReports = 256;
    /// After setServers() moves away from the connected server: how long to keep reading its
    /// acknowledgements (nothing new is sent meanwhile) before connecting to the new one.
    std::chrono::milliseconds retargetGrace{0};
    AckMode ack = AckMode::Pong;
    /// Before a report that was written earlier to other servers which did not acknowledge it,
    /// send the notice {"resent":SEQ,"unacked_by":[...]} (mp/report_merge.hpp), so that the new
    /// server can ask them whether they kept it (cluster-gossip). Off: plain resends.
    bool announceResends = false;
    /// Largest frame accepted from a server. A pusher only receives pongs (at most 125 bytes,
    /// RFC 6455 5.5) and {"ack":SEQ} messages (about 30 bytes): a frame header announcing more
    /// closes the connection (1009, counted as a failure; the reports stay buffered and go to
    /// the next server) before anything is allocated for it. Poco's own default is 2 GiB.
    size_t maxReceivedBytes = 4096;
};

struct PusherStats {
    uint64_t sent = 0;       // messages written (first time)
    uint64_t retried = 0;    // messages written again after a failover or reconnect
    uint64_t dropped = 0;    // messages dropped because the buffer was full
    uint64_t acked = 0;      // messages acknowledged
    uint64_t failures = 0;   // connections that failed or broke
    uint64_t connected = 0;  // 1 while connected
};

class Pusher {
  public:
    using Log = std::function<void(int level, const std::string&)>;
    using Stats = std::function<void(const PusherStats&)>;

    /// Throws std::invalid_argument on a bad server address (an empty list is allowed: see
    /// setServers).
    Pusher(PusherOptions options, Log log, Stats stats);
    ~Pusher();
    Pusher(const Pusher&) = delete;
    Pusher& operator=(const Pusher&) = delete;

    void start();
    /// Tries to deliver what is buffered (at most drainTimeout), then stops.
    void stop();
    /// Queues one message; `seq` orders and acknowledges it (the report's sequence number).
    void push(uint64_t seq, Encoded message);
    /// Replaces the server list (throws std::invalid_argument on a bad address). When the
    /// connected server is not the new first one, the connection is dropped and everything
    /// unacknowledged goes to the new server. An empty list: keep buffering, connect nowhere.
    void setServers(const std::vector<std::string>& servers);
    PusherStats stats();

    struct Server {
        std::string host;
        uint16_t port = 0;
        bool tls = false;  // wss://
    };
    static Server parseServer(const std::string& s);

  private:
    struct Item {
        uint64_t seq;
        Encoded msg;
        bool sentBefore = false;             // written on some connection already
        std::vector<std::string> writtenTo;  // servers it was written to (at most 8)
    };
    void run();
    bool connect();
    void disconnect();
    bool sendPending(std::unique_lock<std::mutex>& lock);
    void readAcks();
    void ack(uint64_t seq);
    void publish();

    PusherOptions options_;
    std::vector<Server> servers_;
    Log log_;
    Stats statsFn_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Item> items_;  // unacknowledged, oldest first
    size_t sentOnConn_ = 0;   // items_[0..sentOnConn_) were written on this connection
    PusherStats stats_;
    bool stopping_ = false;
    bool started_ = false;
    std::chrono::steady_clock::time_point stopDeadline_;
    std::chrono::steady_clock::time_point nextAttempt_{};
    size_t current_ = 0;       // server index
    std::string connectedTo_;  // host:port of the connection
    bool retarget_ = false;    // setServers() changed the list: reconnect
    std::chrono::steady_clock::time_point retargetDeadline_{};  // end of the retarget grace
    std::unique_ptr<Poco::Net::HTTPClientSession> session_;
    std::unique_ptr<Poco::Net::WebSocket> socket_;
    std::thread thread_;
};

}  // namespace mp::push
