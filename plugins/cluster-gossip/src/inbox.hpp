// SPDX-License-Identifier: Apache-2.0
// The inbox of a master-eligible node: slave reports pushed to /cluster/push, merged into this
// node's next report, acknowledged only once that report is emitted, each counted once.
//
// Acknowledgements ({"ack":SEQ}) are cumulative: an acknowledgement never passes a report of
// the connection that is still open here (received, not yet emitted or settled).
//
// A report the slave wrote earlier to other masters without an acknowledgement arrives after a
// notice ({"resent":SEQ,"unacked_by":[...]}, mp/report_merge.hpp): it is in doubt, since one of
// them may have merged it. It is held, and those masters are asked (/cluster/merged, answer()):
//   merged   - counted there: acknowledged here, not counted;
//   pending  - waiting for that master's next report: asked again;
//   released - not merged there, and that master promises never to merge it: merged here;
//   refused  - nothing listens at that address any more: merged here;
//   anything else (timeout, error answer): asked again, until `holdLimit`; then that master is
//   skipped (counted as forced: the one way left to count a report twice).
// Connections have ids that only grow: a frame of an older connection never takes a report
// from a newer one, and an acknowledgement never goes to a connection that reused an address.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mp/pusher.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace mp::gossip {

/// IPv4:PORT (port 1..65535).
bool parseHostPort(const std::string& addr, std::string& ip, uint16_t& port);

struct InboxOptions {
    std::string selfHttp;       // this node's mp_http (HOST:PORT), as the slaves know it
    std::string bindIp;         // questions to other masters leave from this address
    std::string authorization;  // "Bearer ..." presented to them (the cluster's token; a secret)
    mp::push::TlsClient tls;    // how to dial them (tls.ca_file: TLS)
    std::chrono::seconds holdLimit{300};
    size_t maxOpen = 10000;            // reports waiting here (pending and held)
    size_t maxOpenBytes = 256u << 20;  // and their JSON bytes
};

struct InboxCounters {
    mp::Counter merged, duplicates, rejected, inDoubt, settledElsewhere, forced;
};

class Inbox {
  public:
    using Send = std::function<void(mp_ws_conn*, const std::string&)>;  // a text frame
    using Close = std::function<void(mp_ws_conn*)>;
    using Log = std::function<void(int level, const std::string&)>;
    /// Whether HOST:PORT is the mp_http of a master-eligible member (who may ask).
    using IsMaster = std::function<bool(const std::string&)>;

    Inbox(InboxOptions options, InboxCounters counters, Send send, Close close, Log log,
          IsMaster isMaster);
    ~Inbox();
    Inbox(const Inbox&) = delete;
    Inbox& operator=(const Inbox&) = delete;

    /// This node's mp_http, once its HTTP port is known (before start()).
    void setSelf(const std::string& http);
    void start();  // the resolver thread
    void stop();

    void opened(mp_ws_conn* c);
    void message(mp_ws_conn* c, std::string json);
    void closed(mp_ws_conn* c);

    /// Every report ready to merge (they stay open until emitted() or putBack()).
    std::vector<mp::report::Incoming> take();
    void emitted();  // the merged report is out: remember and acknowledge what take() gave
    void putBack();  // the merge failed: they wait for the next report

    /// /cluster/merged: 200 and the JSON answer, or 400/403 and an error message. `callerIp` is
    /// the address the question came from: it must be the asker's own (a "released" answer is a
    /// promise to that master, so nobody else may ask in its name).
    int answer(const std::string& node, const std::string& started, const std::string& seqs,
               const std::string& asker, const std::string& callerIp, std::string& out);

    struct Stats {
        size_t pending = 0, held = 0, released = 0;
        uint64_t inDoubt = 0, settledElsewhere = 0, settledHere = 0, forced = 0, overloaded = 0;
    };
    Stats stats();

  private:
    using Key = std::tuple<std::string, uint64_t, uint64_t>;  // (node, run, seq)
    enum class Answer { Merged, Pending, Released, Gone, Unreachable };
    struct Waiting {
        uint64_t conn = 0;  // id of the connection that owns it (acknowledged there)
        mp::report::Incoming in;
    };
    struct Held {
        Waiting w;
        std::vector<std::string> ask;                 // masters (mp_http) still to ask, in order
        std::chrono::steady_clock::time_point since;  // asked about since (per master)
        std::chrono::steady_clock::time_point next;   // when to ask again
    };
    struct Conn {
        mp_ws_conn* ws = nullptr;
        std::set<uint64_t> open;  // received, not emitted or settled yet: bounds the ack
        uint64_t ackable = 0;     // highest seq emitted or settled
        uint64_t acked = 0;       // highest acknowledgement sent
        std::map<uint64_t, std::vector<std::string>> notices;  // resent notices, by seq
    };

    static Key keyOf(const mp::report::Incoming& in) { return Key{in.node, in.started, in.seq}; }
    void closeLocked(mp_ws_conn* c);
    uint64_t* owner(const Key& key);
    void hold(const Key& key, std::vector<std::string> ask);
    void ackUpTo(uint64_t connId, uint64_t seq);
    void remember(const Key& key);
    void release(const Key& key, const std::string& asker);
    void dropOpen(uint64_t connId, uint64_t seq);
    std::map<uint64_t, Answer> ask(const std::string& self, const std::string& server,
                                   const std::string& node, uint64_t started,
                                   const std::vector<uint64_t>& seqs);
    void settle(const std::string& server, const std::string& node, uint64_t started,
                const std::map<uint64_t, Answer>& answers);
    void resolveLoop();

    InboxOptions opt_;
    InboxCounters counters_;
    Send send_;
    Close close_;
    Log log_;
    IsMaster isMaster_;

    std::mutex mu_;
    std::condition_variable cv_;
    bool running_ = false;
    std::thread resolver_;
    uint64_t nextConn_ = 1;
    std::map<mp_ws_conn*, uint64_t> connIds_;
    std::map<uint64_t, Conn> conns_;
    std::vector<Waiting> pending_;   // for the next report
    std::vector<Waiting> emitting_;  // taken, being merged and emitted
    std::vector<Held> held_;         // in doubt
    size_t openBytes_ = 0;           // JSON bytes in pending_ and held_
    std::set<Key> merged_;
    std::deque<Key> mergedOrder_;
    std::map<Key, std::string> released_;  // promised not to merge: key -> the asker
    std::deque<Key> releasedOrder_;
    Stats stats_;
};

}  // namespace mp::gossip
