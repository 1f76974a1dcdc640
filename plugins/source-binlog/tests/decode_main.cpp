// SPDX-License-Identifier: Apache-2.0
// binlog-decode FILE...: source-binlog's decoder and message rendering alone, without the host
// (no record bus, no sink): every row change of the files rendered as its JSON message and
// counted. bench/binlog.py times it next to the whole node and mariadb-binlog; the fuzz corpus
// and tests use the plugin itself.
#include <cstdio>
#include <cstring>
#include <mp/sdk.hpp>
#include <string>
#include <vector>

#include "binlog.hpp"
#include "file_reader.hpp"
#include "message.hpp"

namespace {

class Count : public mp::binlog::Handler {
  public:
    explicit Count(mp::binlog::Decoder*& d) : decoder_(d) {}
    void row(const mp::binlog::EventHeader& h, const mp::binlog::TableMap& t,
             mp::binlog::RowKind kind, const mp::binlog::Image& before,
             const mp::binlog::Image& after, uint32_t) override {
        mp::binlog::rowMessage(out_, h, t, kind, before, after, decoder_->position(), 0, {});
        bytes += out_.size();
        ++rows;
    }
    void commit(const mp::binlog::EventHeader&, const mp::binlog::Position&) override {}
    uint64_t rows = 0;
    uint64_t bytes = 0;

  private:
    mp::binlog::Decoder*& decoder_;
    std::string out_;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: binlog-decode FILE...\n");
        return 2;
    }
    mp::binlog::Decoder* self = nullptr;
    Count count(self);
    mp::binlog::Decoder d(count);
    self = &d;
    try {
        for (int i = 1; i < argc; ++i) {
            mp::binlog::FileReader f(argv[i], 1024u << 20);
            d.startFile(argv[i]);
            const uint8_t* ev = nullptr;
            size_t n = 0;
            while (f.next(ev, n)) {
                if (!d.event(ev, n)) {
                    std::fprintf(stderr, "%s\n", d.error().c_str());
                    return 1;
                }
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    std::printf("%llu rows, %llu bytes of JSON\n", static_cast<unsigned long long>(count.rows),
                static_cast<unsigned long long>(count.bytes));
    return 0;
}
