// SPDX-License-Identifier: Apache-2.0
// Fuzz target: cluster-gossip's inbox (plugins/cluster-gossip/src/inbox.hpp), as slaves and
// other masters drive it: connections open and close, reports (valid ones built from the input
// and raw bytes), resent notices, merges that succeed or fail, /cluster/merged questions.
// Checked: acknowledgements only grow on a connection; a report merged once is never handed to
// a merge again; one released to another master is never merged here (no resolver runs, so
// nothing is settled behind the target's back).
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "inbox.hpp"

namespace {

void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

using Key = std::tuple<std::string, uint64_t, uint64_t>;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static char handles[4];
    auto conn = [](uint8_t b) { return reinterpret_cast<mp_ws_conn*>(&handles[b % 4]); };
    std::map<mp_ws_conn*, uint64_t> lastAck;
    mp::gossip::InboxOptions o;
    o.selfHttp = "127.0.0.9:9";
    o.maxOpen = 8;
    o.maxOpenBytes = 4096;
    mp::gossip::Inbox inbox(
        o, mp::gossip::InboxCounters{},
        [&](mp_ws_conn* c, const std::string& text) {
            check(text.rfind("{\"ack\":", 0) == 0);
            uint64_t v = std::stoull(text.substr(7));
            check(v > lastAck[c]);
            lastAck[c] = v;
        },
        [](mp_ws_conn*) {}, [](int, const std::string&) {},
        [](const std::string& a) { return a == "127.0.0.1:1" || a == "127.0.0.2:2"; });
    std::set<Key> merged;
    std::set<Key> released;
    size_t i = 0;
    while (i + 2 <= size) {
        uint8_t op = data[i];
        size_t len = std::min<size_t>(data[i + 1], size - i - 2);
        const uint8_t* p = data + i + 2;
        i += 2 + len;
        uint8_t a = len > 0 ? p[0] : 0;
        uint8_t b = len > 1 ? p[1] : 0;
        switch (op % 8) {
            case 0:
                lastAck.erase(conn(a));
                inbox.opened(conn(a));
                break;
            case 1:
                inbox.closed(conn(a));
                break;
            case 2:  // a valid report of slave s0 or s1
                inbox.message(conn(a), "{\"version\":1,\"node\":\"s" + std::to_string(b % 2) +
                                           "\",\"started_ns\":1,\"seq\":" +
                                           std::to_string(1 + (len > 2 ? p[2] % 16 : 0)) + "}");
                break;
            case 3:  // a resent notice naming masters, this one, or garbage
                inbox.message(conn(a), "{\"resent\":" + std::to_string(1 + b % 16) +
                                           ",\"unacked_by\":[\"127.0.0." +
                                           std::to_string(len > 2 ? p[2] % 3 : 1) + ":1\"," +
                                           "\"127.0.0.9:9\",\"x\"]}");
                break;
            case 4: {  // a merge
                for (const auto& in : inbox.take()) {
                    Key k{in.node, in.started, in.seq};
                    check(merged.count(k) == 0 && released.count(k) == 0);
                    if ((b & 1) == 0) {
                        merged.insert(k);
                    }
                }
                (b & 1) == 0 ? inbox.emitted() : inbox.putBack();
                break;
            }
            case 5: {  // a question: node, started, seqs, asker, split by newlines
                std::string s(reinterpret_cast<const char*>(p), len);
                std::string f[4];
                size_t at = 0;
                for (auto& x : f) {
                    size_t nl = std::min(s.find('\n', at), s.size());
                    x = at <= s.size() ? s.substr(at, nl - at) : "";
                    at = nl + 1;
                }
                std::string out;
                int st = inbox.answer(f[0], f[1], f[2], f[3], "127.0.0.1", out);
                check(st == 200 || st == 400 || st == 403);
                break;
            }
            case 6: {  // a question about s0's reports, from a known master
                std::string out;
                std::string seqs = std::to_string(1 + a % 16) + "," + std::to_string(1 + b % 16);
                if (inbox.answer("s0", "1", seqs, "127.0.0.1:1", "127.0.0.1", out) == 200) {
                    size_t r = out.find("\"released\":[");
                    check(r != std::string::npos);
                    for (size_t q = r + 12; q < out.size() && out[q] != ']';) {
                        size_t e = out.find_first_of(",]", q);
                        released.insert(Key{"s0", 1, std::stoull(out.substr(q, e - q))});
                        q = out[e] == ',' ? e + 1 : e;
                    }
                }
                break;
            }
            default:
                inbox.message(conn(a), std::string(reinterpret_cast<const char*>(p), len));
                break;
        }
    }
    auto st = inbox.stats();
    check(st.pending + st.held <= o.maxOpen);
    return 0;
}
