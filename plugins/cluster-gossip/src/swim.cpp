// SPDX-License-Identifier: Apache-2.0
// Membership's SWIM state, under its mutex: the member table, alive/suspect/dead with
// incarnations and refutation, Lifeguard's suspicion timeout and awareness, the broadcast queue
// with its retransmit limit, push-pull merge; and the periodic work of the timer thread
// (probes, indirect probes, gossip rounds, timers, reaping).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "membership_internal.hpp"

namespace mp::gossip {

using namespace member;  // its bounds and socket helpers (membership_internal.hpp)

Membership::Member* Membership::find(const std::string& name) {
    auto it = members_.find(name);
    return it == members_.end() ? nullptr : &it->second;
}

Alive Membership::selfAlive() const {
    return Alive{incarnation_, opt_.name, selfAddr_, port_, encodeTags(opt_.tags), kVsn};
}

Bytes Membership::localState(bool join) {
    PushPull pp;
    pp.join = join;
    for (const auto& [name, m] : members_) {
        PushNodeState s;
        s.name = name;
        s.addr = m.addr;
        s.port = m.port;
        s.meta = m.meta;
        s.incarnation = m.incarnation;
        s.state = m.state;
        s.vsn = m.vsn;
        pp.nodes.push_back(std::move(s));
    }
    return encode(pp);
}

void Membership::mergeRemote(const PushPull& pp) {
    uint64_t lt = 0;
    if (!pp.userState.empty() && serfLTime(pp.userState.data(), pp.userState.size(), lt)) {
        serfClock_ = std::max(serfClock_, lt);
    }
    for (const PushNodeState& s : pp.nodes) {
        if (!withinLimits(s)) {
            ++stats_.refusedOversize;
            continue;
        }
        switch (s.state) {
            case State::Alive:
                onAlive(Alive{s.incarnation, s.name, s.addr, s.port, s.meta, s.vsn}, true);
                break;
            case State::Left:
                onDead(Dead{s.incarnation, s.name, s.name});
                break;
            case State::Dead:  // never instant death from someone else's view: suspicion
            case State::Suspect:
                onSuspect(Suspect{s.incarnation, s.name, opt_.name});
                break;
        }
    }
}

void Membership::onAlive(const Alive& a, bool /*bootstrap*/) {
    if (a.vsn.size() == 6 && (a.vsn[0] == 0 || a.vsn[1] == 0 || a.vsn[0] > a.vsn[1])) {
        return;
    }
    if (!unusableAddress(a.addr).empty()) {  // probes to it would go nowhere, or everywhere
        ++stats_.refusedAddress;
        return;
    }
    std::map<std::string, std::string> tags;
    decodeTags(a.meta, tags);
    if (a.node != opt_.name) {
        // Groups isolate clusters both ways; a member without the tag (a serf agent) is in "".
        auto g = tags.find("group");
        if ((g == tags.end() ? std::string() : g->second) != opt_.group) {
            ++stats_.refusedGroup;
            return;
        }
    }
    if (a.node == opt_.name) {
        if (left_ || a.incarnation < incarnation_) {
            return;
        }
        Alive mine = selfAlive();
        if (a.incarnation == incarnation_ && a.meta == mine.meta && a.vsn == mine.vsn) {
            return;
        }
        refute(a.incarnation);
        return;
    }
    Member* m = find(a.node);
    auto now = this->now();
    if (m == nullptr) {
        if (members_.size() >= opt_.maxMembers) {
            ++stats_.refusedFull;
            return;
        }
        Member n;
        n.name = a.node;
        n.addr = a.addr;
        n.ip = ipString(a.addr);
        n.port = a.port;
        n.meta = a.meta;
        n.vsn = a.vsn;
        n.incarnation = a.incarnation;
        n.state = State::Alive;
        n.stateChange = now;
        n.tags = std::move(tags);
        members_[a.node] = n;
        // A new member goes into the probe order at a random place, as memberlist does.
        if (!probeOrder_.empty()) {
            size_t at = rng_() % (probeOrder_.size() + 1);
            probeOrder_.insert(probeOrder_.begin() + static_cast<std::ptrdiff_t>(at), a.node);
        }
        broadcast(a.node, encode(a));
        log_(0, "member " + a.node + " (" + n.ip + ":" + std::to_string(a.port) + ") joined");
        changed();
        return;
    }
    bool moved = m->addr != a.addr || m->port != a.port;
    bool gone = m->state == State::Dead || m->state == State::Left;
    if (moved && !gone) {
        log_(1, "member " + a.node + " claims another address while alive: ignored");
        return;
    }
    if (a.incarnation <= m->incarnation && !(moved && gone)) {
        return;
    }
    bool stateChanged = m->state != State::Alive;
    bool tagsChanged = m->meta != a.meta;
    suspicions_.erase(a.node);
    m->addr = a.addr;
    m->ip = ipString(a.addr);
    m->port = a.port;
    m->meta = a.meta;
    m->vsn = a.vsn;
    m->incarnation = a.incarnation;
    m->tags = std::move(tags);
    if (stateChanged) {
        m->state = State::Alive;
        m->stateChange = now;
        log_(0, "member " + a.node + " is alive again");
    }
    broadcast(a.node, encode(a));
    if (stateChanged || tagsChanged) {
        changed();
    }
}

void Membership::onSuspect(const Suspect& s) {
    Member* m = find(s.node);
    if (m == nullptr || s.incarnation < m->incarnation) {
        return;
    }
    if (m->state == State::Suspect) {
        confirm(*m, s.from);
        return;
    }
    if (m->state != State::Alive) {
        return;
    }
    if (s.node == opt_.name) {
        if (!left_) {
            refute(s.incarnation);
        }
        return;
    }
    m->incarnation = s.incarnation;
    suspectMember(*m, s.from);
}

void Membership::suspectMember(Member& m, const std::string& from) {
    m.state = State::Suspect;
    auto now = this->now();
    m.stateChange = now;
    ++stats_.suspicions;
    // Lifeguard: the timeout starts long when others can confirm, and shrinks with each
    // independent confirmation down to the minimum.
    const auto n = static_cast<double>(members_.size());
    auto k = static_cast<size_t>(std::max(0, opt_.timing.suspicionMult - 2));
    if (members_.size() < k + 2) {
        k = 0;
    }
    double scale = std::max(1.0, std::log10(std::max(1.0, n)));
    auto min = Ms(static_cast<int64_t>(opt_.timing.suspicionMult * scale *
                                       static_cast<double>(opt_.timing.probeInterval.count())));
    auto max = min * opt_.timing.suspicionMaxTimeoutMult;
    Suspicion s;
    s.start = now;
    s.min = min;
    s.max = max;
    s.k = k;
    s.deadline = now + (k < 1 ? min : max);
    s.confirmations.push_back(from);
    s.incarnation = m.incarnation;
    suspicions_[m.name] = std::move(s);
    broadcast(m.name, encode(Suspect{m.incarnation, m.name, from}));
    log_(0, "member " + m.name + " is suspect (from " + from + ")");
    changed();
}

void Membership::confirm(Member& m, const std::string& from) {
    auto it = suspicions_.find(m.name);
    if (it == suspicions_.end()) {
        return;
    }
    Suspicion& s = it->second;
    size_t have = s.confirmations.size() - 1;  // the first is the suspector itself
    if (have >= s.k ||
        std::find(s.confirmations.begin(), s.confirmations.end(), from) != s.confirmations.end()) {
        return;
    }
    s.confirmations.push_back(from);
    double c = static_cast<double>(have + 1);
    double frac = std::log(c + 1.0) / std::log(static_cast<double>(s.k) + 1.0);
    auto span = static_cast<double>((s.max - s.min).count());
    auto timeout =
        std::max(s.min, Ms(static_cast<int64_t>(static_cast<double>(s.max.count()) - frac * span)));
    s.deadline = s.start + timeout;
    broadcast(m.name, encode(Suspect{m.incarnation, m.name, from}));
}

void Membership::onDead(const Dead& d) {
    Member* m = find(d.node);
    if (m == nullptr || d.incarnation < m->incarnation) {
        return;
    }
    if (m->state == State::Dead || m->state == State::Left) {
        return;
    }
    if (d.node == opt_.name) {
        if (!left_) {
            refute(d.incarnation);
        }
        return;
    }
    m->incarnation = d.incarnation;
    markDead(*m, d.from);
}

void Membership::markDead(Member& m, const std::string& from) {
    m.state = from == m.name ? State::Left : State::Dead;
    m.stateChange = now();
    suspicions_.erase(m.name);
    ++stats_.deaths;
    broadcast(m.name, encode(Dead{m.incarnation, m.name, from}));
    log_(m.state == State::Left ? 0 : 1,
         "member " + m.name + (m.state == State::Left ? " left" : " is dead (from " + from + ")"));
    changed();
}

void Membership::refute(uint32_t accused) {
    uint32_t inc = incarnation_ + 1;
    if (accused >= inc) {
        inc = accused + 1;
    }
    incarnation_ = inc;
    Member* self = find(opt_.name);
    if (self != nullptr) {
        self->incarnation = inc;
        self->state = State::Alive;
    }
    ++stats_.refutations;
    if (!opt_.keys.empty()) {
        awarenessDelta(1);  // an accusation without keys is anyone's: it does not count
    }
    broadcast(opt_.name, encode(selfAlive()));
}

uint64_t Membership::broadcast(const std::string& about, Bytes msg) {
    if (!about.empty()) {
        queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                    [&](const Broadcast& b) { return b.about == about; }),
                     queue_.end());
    }
    uint64_t id = ++nextBroadcastId_;
    queue_.push_back(Broadcast{about, std::move(msg), 0, id});
    while (queue_.size() > 1024) {
        queue_.pop_front();
    }
    return id;
}

void Membership::changed() { changedFlag_ = true; }

size_t Membership::aliveCount() const {
    return static_cast<size_t>(std::count_if(members_.begin(), members_.end(), [](const auto& kv) {
        return kv.second.state == State::Alive || kv.second.state == State::Suspect;
    }));
}

int Membership::retransmitLimit() const {
    double n = static_cast<double>(members_.size());
    return opt_.timing.retransmitMult * static_cast<int>(std::ceil(std::log10(n + 1.0)));
}

void Membership::awarenessDelta(int d) {
    stats_.awareness = std::clamp(stats_.awareness + d, 0, opt_.timing.awarenessMax - 1);
}

Ms Membership::probeIntervalNow() const {
    return opt_.timing.probeInterval * (stats_.awareness + 1);
}

// ---- periodic work ----

void Membership::timerLoop() {
    while (running_.load()) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, Ms(10));
        if (!running_.load()) {
            break;
        }
        periodic(now());
        bool notify = changedFlag_;
        changedFlag_ = false;
        lock.unlock();
        if (notify && change_) {
            change_();
        }
    }
}

void Membership::periodic(Clock::time_point now) {
    if (!left_) {
        if (now >= nextProbe_) {
            probeNext(now);
            nextProbe_ = now + probeIntervalNow();
        }
        probeDeadlines(now);
        suspicionTimers(now);
    }
    relayTimers(now);
    if (now >= nextGossip_) {
        gossip(now);
        nextGossip_ = now + opt_.timing.gossipInterval;
    }
    reap(now);
    if (now >= nextPushPull_ && !left_) {
        nextPushPull_ = now + opt_.timing.pushPullInterval;
        std::vector<const Member*> peers;
        for (const auto& [name, m] : members_) {
            if (name != opt_.name && m.state == State::Alive) {
                peers.push_back(&m);
            }
        }
        if (!peers.empty() && tcpJobs_.load() < kMaxTcpJobs) {
            const Member* peer = peers[rng_() % peers.size()];
            std::string ip = peer->ip;
            uint16_t port = peer->port;
            Bytes request = localState(false);
            ++tcpJobs_;
            std::thread([this, ip, port, request] {
                StreamMsg reply;
                std::string error;
                if (tcpExchange(ip, port, request, true, reply, error) &&
                    reply.type == MsgType::PushPull) {
                    std::lock_guard<std::mutex> l(mu_);
                    ++stats_.pushPulls;
                    mergeRemote(reply.pushPull);
                }
                --tcpJobs_;
            }).detach();
        }
    }
}

void Membership::probeNext(Clock::time_point now) {
    if (probing_) {
        return;
    }
    // Round robin over a shuffled list; self, dead and left members are skipped.
    Member* target = nullptr;
    for (size_t tries = 0; tries < members_.size() + 1 && target == nullptr; ++tries) {
        if (probeIndex_ >= probeOrder_.size()) {
            probeOrder_.clear();
            for (const auto& [name, m] : members_) {
                probeOrder_.push_back(name);
            }
            std::shuffle(probeOrder_.begin(), probeOrder_.end(), rng_);
            probeIndex_ = 0;
        }
        if (probeOrder_.empty()) {
            return;
        }
        Member* m = find(probeOrder_[probeIndex_++]);
        if (m != nullptr && m->name != opt_.name &&
            (m->state == State::Alive || m->state == State::Suspect)) {
            target = m;
        }
    }
    if (target == nullptr) {
        return;
    }
    probe_ = Probe{};
    probe_.seq = ++seq_;
    probe_.target = target->name;
    probe_.sent = now;
    probe_.indirectAt = now + opt_.timing.probeTimeout;
    probe_.deadline = now + probeIntervalNow();
    probing_ = true;
    ++stats_.probes;
    Bytes ping = encode(Ping{probe_.seq, target->name, selfAddr_, port_, opt_.name});
    if (target->state == State::Suspect) {
        // Tell a suspect it is suspected, so that it can refute at once.
        Bytes c = compound({ping, encode(Suspect{target->incarnation, target->name, opt_.name})});
        sendUdp(target->ip, target->port, c, pmax(target->vsn) >= 5);
    } else {
        sendUdp(target->ip, target->port, ping, false);
    }
}

void Membership::probeDeadlines(Clock::time_point now) {
    if (!probing_) {
        return;
    }
    Member* target = find(probe_.target);
    if (probe_.acked) {
        probing_ = false;
        awarenessDelta(-1);
        if (target != nullptr) {
            target->answered = true;
        }
        return;
    }
    if (target == nullptr) {
        probing_ = false;
        return;
    }
    if (!probe_.indirectSent && now >= probe_.indirectAt) {
        probe_.indirectSent = true;
        std::vector<Member*> helpers;
        for (auto& [name, m] : members_) {
            if (name != opt_.name && name != probe_.target && m.state == State::Alive) {
                helpers.push_back(&m);
            }
        }
        std::shuffle(helpers.begin(), helpers.end(), rng_);
        if (helpers.size() > opt_.timing.indirectChecks) {
            helpers.resize(opt_.timing.indirectChecks);
        }
        for (Member* h : helpers) {
            IndirectPing ind;
            ind.seqNo = probe_.seq;
            ind.target = target->addr;
            ind.port = target->port;
            ind.node = target->name;
            ind.nack = pmax(h->vsn) >= 4;
            ind.sourceAddr = selfAddr_;
            ind.sourcePort = port_;
            ind.sourceNode = opt_.name;
            // A nack missed from a member never heard from says nothing about this node.
            probe_.expectedNacks += ind.nack && trusted(*h) ? 1 : 0;
            sendUdp(h->ip, h->port, encode(ind), false);
        }
        // The TCP fallback runs beside them (a member whose UDP is filtered stays alive).
        if (pmax(target->vsn) >= 3 && tcpJobs_.load() < kMaxTcpJobs) {
            auto ok = std::make_shared<std::atomic<bool>>(false);
            tcpOk_ = ok;
            std::string ip = target->ip;
            uint16_t port = target->port;
            Bytes ping = encode(Ping{probe_.seq, target->name, selfAddr_, port_, opt_.name});
            uint32_t seq = probe_.seq;
            ++tcpJobs_;
            std::thread([this, ip, port, ping, seq, ok] {
                StreamMsg reply;
                std::string error;
                if (tcpExchange(ip, port, ping, true, reply, error) && reply.type == MsgType::Ack) {
                    (void)seq;
                    ok->store(true);
                }
                --tcpJobs_;
            }).detach();
        }
    }
    if (now < probe_.deadline) {
        return;
    }
    probing_ = false;
    if (tcpOk_ && tcpOk_->load()) {
        ++stats_.tcpFallbackOk;
        tcpOk_.reset();
        target->answered = true;
        return;
    }
    tcpOk_.reset();
    ++stats_.probeFailures;
    // Lifeguard: a failed probe may mean that this node is the slow one. Only when the
    // target is a member that is known to exist: a fake member announced by anyone (no keys)
    // never answers, and must not slow this node's probing down.
    if (trusted(*target)) {
        if (probe_.expectedNacks > 0) {
            awarenessDelta(std::max(
                0, static_cast<int>(probe_.expectedNacks) - static_cast<int>(probe_.nacks)));
        } else {
            awarenessDelta(1);
        }
    }
    if (target->state == State::Alive) {
        suspectMember(*target, opt_.name);
    }
}

void Membership::gossip(Clock::time_point now) {
    if (queue_.empty()) {
        return;
    }
    std::vector<Member*> peers;
    for (auto& [name, m] : members_) {
        if (name == opt_.name || m.state == State::Left) {
            continue;
        }
        if (m.state == State::Dead && now - m.stateChange > opt_.timing.gossipToTheDead) {
            continue;
        }
        peers.push_back(&m);
    }
    std::shuffle(peers.begin(), peers.end(), rng_);
    if (peers.size() > opt_.timing.gossipNodes) {
        peers.resize(opt_.timing.gossipNodes);
    }
    const int limit = retransmitLimit();
    size_t budget = kUdpBuffer - 2 - 5 - (opt_.keys.empty() ? 0 : 29);
    for (Member* peer : peers) {
        std::stable_sort(queue_.begin(), queue_.end(),
                         [](const Broadcast& a, const Broadcast& b) { return a.sends < b.sends; });
        std::vector<Bytes> parts;
        size_t used = 0;
        for (Broadcast& b : queue_) {
            if (used + b.msg.size() + 2 > budget || parts.size() == 255) {
                continue;
            }
            used += b.msg.size() + 2;
            parts.push_back(b.msg);
            ++b.sends;
        }
        queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                    [&](const Broadcast& b) { return b.sends >= limit; }),
                     queue_.end());
        if (parts.empty()) {
            continue;
        }
        Bytes msg = parts.size() == 1 ? parts.front() : compound(parts);
        sendUdp(peer->ip, peer->port, msg, pmax(peer->vsn) >= 5);
    }
}

void Membership::suspicionTimers(Clock::time_point now) {
    for (auto it = suspicions_.begin(); it != suspicions_.end();) {
        if (now < it->second.deadline) {
            ++it;
            continue;
        }
        std::string name = it->first;
        uint32_t inc = it->second.incarnation;
        it = suspicions_.erase(it);
        Member* m = find(name);
        if (m != nullptr && m->state == State::Suspect && m->incarnation == inc) {
            markDead(*m, opt_.name);
        }
    }
}

void Membership::relayTimers(Clock::time_point now) {
    for (auto it = relays_.begin(); it != relays_.end();) {
        if (now < it->second.nackAt) {
            ++it;
            continue;
        }
        if (it->second.nack) {
            sendUdp(it->second.ip, it->second.port, encode(Nack{it->second.origSeq}), false);
        }
        it = relays_.erase(it);
    }
}

void Membership::reap(Clock::time_point now) {
    for (auto it = members_.begin(); it != members_.end();) {
        const Member& m = it->second;
        if (it->first != opt_.name && (m.state == State::Dead || m.state == State::Left) &&
            now - m.stateChange > opt_.timing.gossipToTheDead) {
            it = members_.erase(it);
            changed();
        } else {
            ++it;
        }
    }
}

}  // namespace mp::gossip
