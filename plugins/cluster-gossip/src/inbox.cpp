// SPDX-License-Identifier: Apache-2.0
#include "inbox.hpp"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/URI.h>
#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <mp/hostport.hpp>
#include <mp/pusher.hpp>

namespace mp::gossip {

namespace {
using Clock = std::chrono::steady_clock;
constexpr size_t kMaxAskSeqs = 256;       // sequence numbers in one question
constexpr size_t kRemembered = 100000;    // merged and released keys kept (oldest go first)
constexpr size_t kNoticesPerConn = 1024;  // resent notices waiting for their report
}  // namespace

bool parseHostPort(const std::string& addr, std::string& ip, uint16_t& port) {
    auto hp = mp::net::parseHostPort(addr, mp::net::HostKind::Ipv4, 64);
    if (!hp) {
        return false;
    }
    ip = hp->host;
    port = hp->port;
    return true;
}

Inbox::Inbox(InboxOptions options, InboxCounters counters, Send send, Close close, Log log,
             IsMaster isMaster)
    : opt_(std::move(options)),
      counters_(counters),
      send_(std::move(send)),
      close_(std::move(close)),
      log_(std::move(log)),
      isMaster_(std::move(isMaster)) {}

Inbox::~Inbox() { stop(); }

void Inbox::setSelf(const std::string& http) {
    std::lock_guard<std::mutex> lock(mu_);
    opt_.selfHttp = http;
}

void Inbox::start() {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_) {
        return;
    }
    running_ = true;
    resolver_ = std::thread([this] { resolveLoop(); });
}

void Inbox::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        running_ = false;
    }
    cv_.notify_all();
    if (resolver_.joinable()) {
        resolver_.join();
    }
}

void Inbox::opened(mp_ws_conn* c) {
    std::lock_guard<std::mutex> lock(mu_);
    closeLocked(c);  // a handle seen open again: the old connection is over
    uint64_t id = nextConn_++;
    connIds_[c] = id;
    conns_[id].ws = c;
}

void Inbox::closed(mp_ws_conn* c) {
    std::lock_guard<std::mutex> lock(mu_);
    closeLocked(c);
}

void Inbox::closeLocked(mp_ws_conn* c) {
    auto it = connIds_.find(c);
    if (it == connIds_.end()) {
        return;
    }
    uint64_t id = it->second;
    connIds_.erase(it);
    conns_.erase(id);
    // Not merged yet and now not acknowledgeable: the slave sends them again. What is being
    // emitted stays (merged, not acknowledged: the next master is told it was merged).
    auto gone = [&](const Waiting& w) {
        if (w.conn != id) {
            return false;
        }
        openBytes_ -= w.in.json.size();
        return true;
    };
    pending_.erase(std::remove_if(pending_.begin(), pending_.end(), gone), pending_.end());
    held_.erase(
        std::remove_if(held_.begin(), held_.end(), [&](const Held& h) { return gone(h.w); }),
        held_.end());
}

void Inbox::message(mp_ws_conn* c, std::string json) {
    mp::report::ResentNotice notice;
    bool isNotice = mp::report::parseResentNotice(json, notice);
    mp::report::Identity id;
    if (!isNotice && !mp::report::reportIdentity(json, id)) {
        counters_.rejected.add();
        return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto cid = connIds_.find(c);
    if (cid == connIds_.end()) {
        return;
    }
    const uint64_t connId = cid->second;
    Conn& conn = conns_[connId];
    if (isNotice) {
        std::vector<std::string> ask;
        for (std::string& s : notice.unackedBy) {
            std::string ip;
            uint16_t port = 0;
            if (parseHostPort(s, ip, port) && s != opt_.selfHttp) {
                ask.push_back(std::move(s));
            }
        }
        if (conn.notices.size() >= kNoticesPerConn) {
            conn.notices.erase(conn.notices.begin());
        }
        conn.notices[notice.seq] = std::move(ask);
        return;
    }
    std::vector<std::string> ask;
    if (auto n = conn.notices.find(id.seq); n != conn.notices.end()) {
        ask = std::move(n->second);
        conn.notices.erase(n);
    }
    Key key{id.node, id.started, id.seq};
    if (merged_.count(key) != 0) {
        counters_.duplicates.add();
        ackUpTo(connId, id.seq);  // merged before: the slave missed the acknowledgement
        return;
    }
    if (auto r = released_.find(key); r != released_.end()) {
        ask.push_back(r->second);  // promised to that master: it may have merged it
    }
    std::sort(ask.begin(), ask.end());
    ask.erase(std::unique(ask.begin(), ask.end()), ask.end());
    if (uint64_t* own = owner(key)) {
        // Waiting already. A newer connection of the slave takes it over (the older one is
        // going away); a late frame of an older one changes nothing.
        if (connId < *own) {
            return;
        }
        if (connId > *own) {
            dropOpen(*own, id.seq);
            *own = connId;
            conn.open.insert(id.seq);
        }
        if (!ask.empty()) {
            hold(key, std::move(ask));
        }
        return;
    }
    if (conn.ws == nullptr) {
        return;  // closing (overloaded before): nothing more is taken on it
    }
    if (pending_.size() + held_.size() >= opt_.maxOpen ||
        openBytes_ + json.size() > opt_.maxOpenBytes) {
        // Not taken, and acknowledgements are cumulative: this connection must not acknowledge
        // anything after it. It is closed; the slave sends everything unacknowledged again.
        counters_.rejected.add();
        ++stats_.overloaded;
        close_(conn.ws);
        conn.ws = nullptr;
        log_(1, "inbox full (" + std::to_string(pending_.size() + held_.size()) + " reports, " +
                    std::to_string(openBytes_ >> 20) + " MiB): closed a slave connection");
        return;
    }
    mp::report::Incoming in;
    in.addr = id.node;
    in.node = id.node;
    in.started = id.started;
    in.seq = id.seq;
    in.json = std::move(json);
    openBytes_ += in.json.size();
    conn.open.insert(id.seq);
    pending_.push_back(Waiting{connId, std::move(in)});
    if (!ask.empty()) {
        hold(key, std::move(ask));
    }
}

uint64_t* Inbox::owner(const Key& key) {
    for (auto* list : {&pending_, &emitting_}) {
        for (Waiting& w : *list) {
            if (keyOf(w.in) == key) {
                return &w.conn;
            }
        }
    }
    for (Held& h : held_) {
        if (keyOf(h.w.in) == key) {
            return &h.w.conn;
        }
    }
    return nullptr;
}

void Inbox::hold(const Key& key, std::vector<std::string> ask) {
    auto p = std::find_if(pending_.begin(), pending_.end(),
                          [&](const Waiting& w) { return keyOf(w.in) == key; });
    if (p != pending_.end()) {
        auto now = Clock::now();
        held_.push_back(Held{std::move(*p), std::move(ask), now, now});
        pending_.erase(p);
        counters_.inDoubt.add();
        ++stats_.inDoubt;
        cv_.notify_all();
        return;
    }
    for (Held& h : held_) {
        if (keyOf(h.w.in) == key) {
            for (std::string& a : ask) {
                if (std::find(h.ask.begin(), h.ask.end(), a) == h.ask.end()) {
                    h.ask.push_back(std::move(a));
                }
            }
            return;
        }
    }
    // Being emitted already (it came first without a notice): it is counted here.
}

void Inbox::dropOpen(uint64_t connId, uint64_t seq) {
    auto it = conns_.find(connId);
    if (it != conns_.end()) {
        it->second.open.erase(seq);
    }
}

void Inbox::ackUpTo(uint64_t connId, uint64_t seq) {
    auto it = conns_.find(connId);
    if (it == conns_.end() || it->second.ws == nullptr) {
        return;
    }
    Conn& conn = it->second;
    conn.ackable = std::max(conn.ackable, seq);
    uint64_t upTo = conn.ackable;
    if (!conn.open.empty()) {
        upTo = std::min(upTo, *conn.open.begin() - 1);
    }
    if (upTo > conn.acked) {
        conn.acked = upTo;
        send_(conn.ws, "{\"ack\":" + std::to_string(upTo) + "}");
    }
}

void Inbox::remember(const Key& key) {
    if (merged_.insert(key).second) {
        mergedOrder_.push_back(key);
        if (mergedOrder_.size() > kRemembered) {
            merged_.erase(mergedOrder_.front());
            mergedOrder_.pop_front();
        }
    }
}

void Inbox::release(const Key& key, const std::string& asker) {
    if (released_.emplace(key, asker).second) {
        releasedOrder_.push_back(key);
        if (releasedOrder_.size() > kRemembered) {
            released_.erase(releasedOrder_.front());
            releasedOrder_.pop_front();
        }
    }
}

std::vector<mp::report::Incoming> Inbox::take() {
    std::lock_guard<std::mutex> lock(mu_);
    emitting_.swap(pending_);
    pending_.clear();
    std::vector<mp::report::Incoming> out;
    out.reserve(emitting_.size());
    for (const Waiting& w : emitting_) {
        out.push_back(w.in);
    }
    return out;
}

void Inbox::emitted() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Waiting& w : emitting_) {
        remember(keyOf(w.in));
        openBytes_ -= std::min(openBytes_, w.in.json.size());
        dropOpen(w.conn, w.in.seq);
        ackUpTo(w.conn, w.in.seq);
    }
    emitting_.clear();
}

void Inbox::putBack() {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.insert(pending_.begin(), std::make_move_iterator(emitting_.begin()),
                    std::make_move_iterator(emitting_.end()));
    emitting_.clear();
}

int Inbox::answer(const std::string& node, const std::string& started, const std::string& seqs,
                  const std::string& asker, const std::string& callerIp, std::string& out) {
    uint64_t run = 0;
    auto [e1, ec1] = std::from_chars(started.data(), started.data() + started.size(), run);
    std::string askerIp;
    uint16_t askerPort = 0;
    bool ok = !node.empty() && node.size() <= 256 && parseHostPort(asker, askerIp, askerPort) &&
              ec1 == std::errc() && e1 == started.data() + started.size();
    std::vector<uint64_t> list;
    for (size_t at = 0; ok && at <= seqs.size();) {
        size_t comma = std::min(seqs.find(',', at), seqs.size());
        uint64_t v = 0;
        auto [e, ec] = std::from_chars(seqs.data() + at, seqs.data() + comma, v);
        ok = ec == std::errc() && e == seqs.data() + comma && v != 0 && list.size() < kMaxAskSeqs;
        list.push_back(v);
        at = comma + 1;
    }
    if (!ok) {
        out =
            "node, started, asker (IPv4:PORT) and seqs (up to 256 numbers, comma separated) "
            "are required";
        return 400;
    }
    if (askerIp != callerIp) {
        out = "asker " + asker + " is not the address this question comes from";
        return 403;
    }
    if (!isMaster_(asker)) {
        out = "asker " + asker + " is not the address of a master-eligible member";
        return 403;
    }
    std::string lists[3];
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t seq : list) {
        Key key{node, run, seq};
        int k = merged_.count(key) != 0 ? 0 : owner(key) != nullptr ? 1 : 2;
        if (k == 2) {
            release(key, asker);
        }
        lists[k] += (lists[k].empty() ? "" : ",") + std::to_string(seq);
    }
    out = "{\"merged\":[" + lists[0] + "],\"pending\":[" + lists[1] + "],\"released\":[" +
          lists[2] + "]}";
    return 200;
}

Inbox::Stats Inbox::stats() {
    std::lock_guard<std::mutex> lock(mu_);
    Stats s = stats_;
    s.pending = pending_.size();
    s.held = held_.size();
    s.released = released_.size();
    return s;
}

std::map<uint64_t, Inbox::Answer> Inbox::ask(const std::string& self, const std::string& server,
                                             const std::string& node, uint64_t started,
                                             const std::vector<uint64_t>& seqs) {
    std::map<uint64_t, Answer> out;
    auto all = [&](Answer a) {
        for (uint64_t s : seqs) {
            out[s] = a;
        }
        return out;
    };
    std::string ip;
    uint16_t port = 0;
    if (!parseHostPort(server, ip, port)) {
        return all(Answer::Unreachable);  // checked on arrival: cannot happen
    }
    std::string path = "/cluster/merged?started=" + std::to_string(started) + "&node=";
    Poco::URI::encode(node, "&=+#%?/;", path);
    path += "&asker=" + self + "&seqs=";
    for (size_t i = 0; i < seqs.size(); ++i) {
        path += (i == 0 ? "" : ",") + std::to_string(seqs[i]);
    }
    std::string body;
    try {
        // From this node's address, as its gossip and its pushes.
        auto session = mp::push::openHttpSession(opt_.bindIp, ip, port, std::chrono::seconds(1),
                                                 std::chrono::seconds(2), opt_.tls);
        Poco::Net::HTTPRequest rq(Poco::Net::HTTPRequest::HTTP_GET, path,
                                  Poco::Net::HTTPMessage::HTTP_1_1);
        rq.setHost(ip, port);
        if (!opt_.authorization.empty()) {
            rq.set("Authorization", opt_.authorization);
        }
        session->sendRequest(rq);
        Poco::Net::HTTPResponse rs;
        std::istream& is = session->receiveResponse(rs);
        char buf[4096];
        while (is.read(buf, sizeof buf) || is.gcount() > 0) {
            body.append(buf, static_cast<size_t>(is.gcount()));
            if (body.size() > (64u << 10)) {
                break;  // an answer to 256 numbers is far smaller
            }
        }
        if (rs.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
            log_(1, "in-doubt reports: " + server + " answered " +
                        std::to_string(static_cast<int>(rs.getStatus())) + ": asked again later");
            return all(Answer::Unreachable);
        }
    } catch (const Poco::Net::ConnectionRefusedException&) {
        return all(Answer::Gone);  // nobody listens there: that master is gone
    } catch (const std::exception&) {
        return all(Answer::Unreachable);  // timed out, reset: asked again later
    }
    try {
        Poco::JSON::Object::Ptr o =
            Poco::JSON::Parser().parse(body).extract<Poco::JSON::Object::Ptr>();
        const std::pair<const char*, Answer> kinds[] = {{"released", Answer::Released},
                                                        {"pending", Answer::Pending},
                                                        {"merged", Answer::Merged}};
        for (const auto& [name, answer] : kinds) {  // "merged" last: it wins a contradiction
            Poco::JSON::Array::Ptr a = o->getArray(name);
            for (size_t i = 0; !a.isNull() && i < a->size(); ++i) {
                out[a->getElement<uint64_t>(static_cast<unsigned>(i))] = answer;
            }
        }
    } catch (const std::exception&) {
        return all(Answer::Unreachable);
    }
    return out;
}

void Inbox::settle(const std::string& server, const std::string& node, uint64_t started,
                   const std::map<uint64_t, Answer>& answers) {
    auto now = Clock::now();
    for (auto it = held_.begin(); it != held_.end();) {
        Held& h = *it;
        auto a = answers.find(h.w.in.seq);
        if (h.w.in.node != node || h.w.in.started != started || h.ask.empty() ||
            h.ask.front() != server || a == answers.end()) {
            ++it;
            continue;
        }
        bool next = false;  // done with this master
        switch (a->second) {
            case Answer::Merged: {
                counters_.settledElsewhere.add();
                ++stats_.settledElsewhere;
                openBytes_ -= std::min(openBytes_, h.w.in.json.size());
                uint64_t conn = h.w.conn;
                uint64_t seq = h.w.in.seq;
                it = held_.erase(it);
                dropOpen(conn, seq);
                ackUpTo(conn, seq);
                continue;
            }
            case Answer::Released:
            case Answer::Gone:
                next = true;
                break;
            case Answer::Pending:
            case Answer::Unreachable:
                h.next = now + std::chrono::milliseconds(a->second == Answer::Pending ? 500 : 1000);
                if (now - h.since >= opt_.holdLimit) {
                    log_(1, "in-doubt report " + h.w.in.node + "#" + std::to_string(h.w.in.seq) +
                                ": no answer from " + server +
                                " within in_doubt_hold_s: not waiting for it any more");
                    counters_.forced.add();
                    ++stats_.forced;
                    next = true;
                }
                break;
        }
        if (next) {
            h.ask.erase(h.ask.begin());
            h.since = now;
            h.next = now;
            if (h.ask.empty()) {  // merged here; open on its connection until emitted
                ++stats_.settledHere;
                pending_.push_back(std::move(h.w));
                it = held_.erase(it);
                continue;
            }
        }
        ++it;
    }
}

void Inbox::resolveLoop() {
    struct Question {
        std::string server, node;
        uint64_t started = 0;
        std::vector<uint64_t> seqs;
    };
    std::unique_lock<std::mutex> lock(mu_);
    while (running_) {
        cv_.wait_for(lock, std::chrono::milliseconds(200));
        std::vector<Question> questions;
        auto now = Clock::now();
        for (const Held& h : held_) {
            if (h.next > now || h.ask.empty()) {
                continue;
            }
            auto q = std::find_if(questions.begin(), questions.end(), [&](const Question& x) {
                return x.server == h.ask.front() && x.node == h.w.in.node &&
                       x.started == h.w.in.started && x.seqs.size() < kMaxAskSeqs;
            });
            if (q == questions.end()) {
                questions.push_back(Question{h.ask.front(), h.w.in.node, h.w.in.started, {}});
                q = std::prev(questions.end());
            }
            q->seqs.push_back(h.w.in.seq);
        }
        for (const Question& q : questions) {
            if (!running_) {
                break;
            }
            std::string self = opt_.selfHttp;
            lock.unlock();
            auto answers = ask(self, q.server, q.node, q.started, q.seqs);
            lock.lock();
            settle(q.server, q.node, q.started, answers);
        }
    }
}

}  // namespace mp::gossip
