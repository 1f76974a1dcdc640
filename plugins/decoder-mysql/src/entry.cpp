// SPDX-License-Identifier: Apache-2.0
// decoder-mysql: MySQL client/server protocol decoder (one instance per worker).
// This is the plugin's frame: properties, lifecycle and the stream hooks with their counters.
// The protocol state machine, matching and aggregation arrive with their own issue.
#include <mp/sdk.hpp>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"slow_threshold_ms", MP_PROP_INT, 0, "100", "latency (ms) above which a query is kept as a slow sample", 0, 86400000, nullptr},
    {"max_sql_length", MP_PROP_INT, 0, "1024", "bytes of raw SQL kept per sample", 16, 1048576, nullptr},
    {"max_templates", MP_PROP_INT, 0, "10000", "templates kept per interval; further ones are counted as evicted", 1, 10000000, nullptr},
    {"max_statements_per_connection", MP_PROP_INT, 0, "1024", "prepared statements remembered per connection", 1, 1000000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class MysqlDecoder : public mp::Plugin {
  public:
    MysqlDecoder(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          slowMs_(cfg.i64("slow_threshold_ms")),
          streams_(host.counter("streams_total", "TCP connections handed to the decoder")),
          bytes_(host.counter("bytes_total", "stream bytes handed to the decoder")),
          gaps_(host.counter("gap_bytes_total", "stream bytes reported missing")) {}

    void* streamOpen(const mp_flow& /*flow*/) override {
        streams_.add();
        return this;  // no per-connection state yet
    }
    void streamData(void* /*s*/, uint32_t /*dir*/, mp_bytes data, uint64_t /*ts*/) override {
        bytes_.add(data.len);
    }
    void streamGap(void* /*s*/, uint32_t /*dir*/, uint64_t len, uint64_t /*ts*/) override {
        gaps_.add(len);
    }

  private:
    int64_t slowMs_;
    mp::Counter streams_;
    mp::Counter bytes_;
    mp::Counter gaps_;
};

}  // namespace

MP_DECLARE_PLUGIN(MysqlDecoder, MP_KIND_DECODER, "decoder-mysql", "0.1.0",
                  "MySQL/MariaDB client/server protocol decoder", kProps, 0)
