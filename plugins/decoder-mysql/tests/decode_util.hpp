// SPDX-License-Identifier: Apache-2.0
// Shared by the decoder-mysql tests: a capture file is read with libpcap, reassembled by the
// host's stream pipeline (mp::host::Pipeline) and decoded by one mp::mysql::Session per TCP
// connection. Results: totals per command/outcome/error, every transaction, and per connection
// its flow, login and transactions in wire order.
#pragma once

#include <doctest/doctest.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "session.hpp"
#include "stream/pipeline.hpp"

namespace mptest::mysql {

using mp::mysql::LoginInfo;
using mp::mysql::Outcome;
using mp::mysql::Session;
using mp::mysql::SessionLimits;
using mp::mysql::SessionStats;
using mp::mysql::Transaction;

/// One TCP connection as the decoder saw it.
struct Connection {
    mp_flow flow{};
    bool midstream = false;
    LoginInfo login;
    SessionStats stats;
    std::vector<Transaction> transactions;  // in the order the session emitted them
};

struct Totals {
    std::map<std::string, int64_t> commands;     // "QUERY" -> count
    std::map<std::string, int64_t> outcomes;     // "ok" -> count
    std::map<std::string, int64_t> errors;       // "QUERY:1064" -> count
    std::map<std::string, int64_t> loginErrors;  // "connect:1045"
    int64_t rows = 0;
    int64_t tls = 0;
    int64_t lost = 0;
    std::vector<Transaction> all;
    std::vector<Connection> connections;  // after decode(): by first packet time, client port
};

inline const char* outcomeName(Outcome o) {
    switch (o) {
        case Outcome::None:
            return "none";
        case Outcome::Ok:
            return "ok";
        case Outcome::Error:
            return "error";
        case Outcome::ResultSet:
            return "resultset";
        case Outcome::Prepared:
            return "prepared";
        case Outcome::Lost:
            return "lost";
    }
    return "?";
}

/// A stream handler of one worker: one Session per connection; transactions collected per
/// worker, merged after the run.
struct Decoders : mp::host::StreamHandler {
    explicit Decoders(SessionLimits limits = {}) : limits_(limits) {}

    Totals totals;

    void* open(const mp_flow& f) override {
        auto* c = new Open;
        c->conn.flow = f;
        c->conn.midstream = (f.flags & MP_FLOW_MIDSTREAM) != 0;
        c->session = std::make_unique<Session>(limits_, c->conn.midstream,
                                               [this, c](const Transaction& tx) { add(*c, tx); });
        return c;
    }
    void data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) override {
        static_cast<Open*>(s)->session->data(dir, p, n, ts);
    }
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t ts) override {
        static_cast<Open*>(s)->session->gap(dir, len, ts);
    }
    void close(void* s, uint32_t, uint64_t ts) override {
        std::unique_ptr<Open> c(static_cast<Open*>(s));
        c->session->close(ts);
        totals.tls += static_cast<int64_t>(c->session->stats().tlsSessions);
        if (c->session->login().failed) {
            ++totals.loginErrors["connect:" + std::to_string(c->session->login().errorCode)];
        }
        c->conn.login = c->session->login();
        c->conn.stats = c->session->stats();
        totals.connections.push_back(std::move(c->conn));
    }
    void tick(uint64_t) override {}

  private:
    struct Open {
        Connection conn;
        std::unique_ptr<Session> session;
    };
    void add(Open& c, const Transaction& tx) {
        std::string name = mp::mysql::commandName(tx.command).substr(4);  // without "COM_"
        ++totals.commands[name];
        ++totals.outcomes[outcomeName(tx.outcome)];
        if (tx.outcome == Outcome::Error) {
            ++totals.errors[name + ":" + std::to_string(tx.errorCode)];
        }
        if (tx.outcome == Outcome::Lost) {
            ++totals.lost;
        }
        totals.rows += static_cast<int64_t>(tx.rowsReturned);
        totals.all.push_back(tx);
        c.conn.transactions.push_back(tx);
    }
    SessionLimits limits_;
};

/// Decodes `file` with the given pipeline options (workers, server ports, inline worker).
inline Totals decode(const std::string& file, const mp::host::PipelineOptions& po,
                     SessionLimits limits = {}) {
    char err[PCAP_ERRBUF_SIZE] = {0};
    pcap_t* p =
        pcap_open_offline_with_tstamp_precision(file.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    REQUIRE_MESSAGE(p != nullptr, err);
    std::vector<std::unique_ptr<Decoders>> handlers;
    std::vector<mp::host::StreamHandler*> hp;
    for (size_t i = 0; i < po.workers; ++i) {
        handlers.push_back(std::make_unique<Decoders>(limits));
        hp.push_back(handlers.back().get());
    }
    mp::host::Pipeline pipe(po, hp, nullptr);
    pipe.start();
    auto link = static_cast<uint32_t>(pcap_datalink(p));
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    while (pcap_next_ex(p, &hdr, &data) == 1) {
        mp_frame f{};
        // Nanosecond precision: tv_usec holds nanoseconds.
        f.ts_ns = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ULL +
                  static_cast<uint64_t>(hdr->ts.tv_usec);
        f.link_type = link;
        f.orig_len = hdr->len;
        f.flags = MP_FRAME_WAIT;
        f.data = mp_bytes{data, hdr->caplen};
        pipe.onFrames(&f, 1);
    }
    pcap_close(p);
    pipe.endOfInput();
    pipe.stop();
    Totals all;
    for (auto& hptr : handlers) {
        Totals& h = hptr->totals;
        for (auto& [k, v] : h.commands) {
            all.commands[k] += v;
        }
        for (auto& [k, v] : h.outcomes) {
            all.outcomes[k] += v;
        }
        for (auto& [k, v] : h.errors) {
            all.errors[k] += v;
        }
        for (auto& [k, v] : h.loginErrors) {
            all.loginErrors[k] += v;
        }
        all.rows += h.rows;
        all.tls += h.tls;
        all.lost += h.lost;
        all.all.insert(all.all.end(), h.all.begin(), h.all.end());
        for (auto& c : h.connections) {
            all.connections.push_back(std::move(c));
        }
    }
    std::stable_sort(all.connections.begin(), all.connections.end(),
                     [](const Connection& a, const Connection& b) {
                         return std::tie(a.flow.ts_ns, a.flow.client_port) <
                                std::tie(b.flow.ts_ns, b.flow.client_port);
                     });
    return all;
}

/// Decodes `file` on port 3306 with `workers` workers.
inline Totals decode(const std::string& file, size_t workers, bool inlineWorker = false) {
    mp::host::PipelineOptions po;
    po.workers = workers;
    po.inlineWorker = inlineWorker;
    return decode(file, po);
}

}  // namespace mptest::mysql
