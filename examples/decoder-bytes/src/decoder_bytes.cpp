// SPDX-License-Identifier: Apache-2.0
// decoder-bytes: the smallest useful decoder. Per server address it counts connections and the
// stream bytes of each direction, and puts them in the report as
//   "bytes": {"servers": {"127.0.0.1:3306": {"connections": 3, "to_server": 812,
//                                            "to_client": 40211, "gap_bytes": 0}}}
// It shows the decoder side of the ABI: one instance per worker, state without locks (the host
// never runs collect() beside the worker's stream hooks), and report() merging the parts.
// It uses nothing but the installed SDK headers.
#include <arpa/inet.h>

#include <map>
#include <memory>
#include <mp/sdk.hpp>
#include <string>
#include <vector>

namespace {

struct Totals {
    uint64_t connections = 0;
    uint64_t toServer = 0;
    uint64_t toClient = 0;
    uint64_t gapBytes = 0;
};

// One worker's interval: totals per server address.
using Part = std::map<std::string, Totals>;

class BytesDecoder : public mp::Plugin, public mp::Collecting<Part> {
  public:
    BytesDecoder(mp::Host host, const mp::Config& /*cfg*/) : Plugin(host) {}

    void* streamOpen(const mp_flow& flow) override {
        char ip[INET6_ADDRSTRLEN] = {0};
        inet_ntop(flow.ip_version == 6 ? AF_INET6 : AF_INET, flow.server_ip, ip, sizeof ip);
        auto* server = new std::string(flow.ip_version == 6 ? "[" + std::string(ip) + "]" : ip);
        *server += ":" + std::to_string(flow.server_port);
        ++interval_[*server].connections;
        return server;
    }
    void streamData(void* s, uint32_t dir, mp_bytes data, uint64_t /*ts*/) override {
        Totals& t = interval_[*static_cast<std::string*>(s)];
        (dir == MP_DIR_TO_SERVER ? t.toServer : t.toClient) += data.len;
    }
    void streamGap(void* s, uint32_t /*dir*/, uint64_t len, uint64_t /*ts*/) override {
        interval_[*static_cast<std::string*>(s)].gapBytes += len;
    }
    void streamClose(void* s, uint32_t /*reason*/, uint64_t /*ts*/) override {
        delete static_cast<std::string*>(s);
    }

    std::unique_ptr<Part> collect(uint64_t /*seq*/, uint64_t /*ts*/) override {
        auto part = std::make_unique<Part>();
        part->swap(interval_);
        return part;
    }
    std::string report(std::vector<std::unique_ptr<Part>> parts) override {
        Part all;
        for (const auto& part : parts) {
            for (const auto& [server, t] : part ? *part : Part{}) {
                Totals& sum = all[server];
                sum.connections += t.connections;
                sum.toServer += t.toServer;
                sum.toClient += t.toClient;
                sum.gapBytes += t.gapBytes;
            }
        }
        std::string out = "\"bytes\":{\"servers\":{";
        bool first = true;
        for (const auto& [server, t] : all) {
            out += (first ? "" : ",") + mp::jsonString(server) +
                   ":{\"connections\":" + std::to_string(t.connections) +
                   ",\"to_server\":" + std::to_string(t.toServer) +
                   ",\"to_client\":" + std::to_string(t.toClient) +
                   ",\"gap_bytes\":" + std::to_string(t.gapBytes) + "}";
            first = false;
        }
        return out + "}}";
    }

  private:
    Part interval_;  // this worker's, since the last collect()
};

}  // namespace

MP_DECLARE_PLUGIN(BytesDecoder, MP_KIND_DECODER, "decoder-bytes", "1.0.0",
                  "Counts connections and stream bytes per server (an example decoder)", nullptr, 0)
