// SPDX-License-Identifier: Apache-2.0
// source-counter: the smallest source that checkpoints. On its own thread it emits records
// {"n":SEQ,"pad":"..."} numbered 1, 2, 3... on one stream, at a rate or as fast as the host takes
// them (it declares the "wait" back-pressure policy: a full record buffer pauses it, nothing is
// dropped). The host tells it up to which number every subscribed sink has delivered
// (onDelivered); it writes that mark to its checkpoint file, and a restarted source goes on
// from the record after it. So a record it was told is delivered is never emitted again, and one
// it was not told about is emitted again after a crash: at least once, with the same number.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <string>
#include <thread>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"stream", MP_PROP_STRING, 0, "example.counter", "stream of the records", 0, 0, nullptr},
    {"count", MP_PROP_INT, 0, "0", "records to emit (0: until stopped)", 0, INT64_MAX, nullptr},
    {"rate", MP_PROP_INT, 0, "0", "records per second (0: as fast as the host takes them)", 0, 10000000, nullptr},
    {"payload_bytes", MP_PROP_INT, 0, "100", "size of each record's JSON", 16, 16777216, nullptr},
    {"checkpoint", MP_PROP_STRING, 0, "", "file keeping the delivered mark (empty: none)", 0, 0, nullptr},
    {"exit_when_delivered", MP_PROP_BOOL, 0, "false", "stop the node once all `count` records are delivered", 0, 0, nullptr},
    {"batch", MP_PROP_INT, 0, "1", "records handed to the host together (emit_records, ABI 1.7; 1: one emit_record each)", 1, 100000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class CounterSource : public mp::Plugin, public mp::RecordProducer {
  public:
    CounterSource(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          stream_(cfg.str("stream")),
          count_(static_cast<uint64_t>(cfg.i64("count"))),
          rate_(cfg.i64("rate")),
          payloadBytes_(static_cast<size_t>(cfg.i64("payload_bytes"))),
          checkpoint_(cfg.str("checkpoint")),
          exitWhenDelivered_(cfg.boolean("exit_when_delivered")),
          batchSize_(static_cast<size_t>(cfg.i64("batch"))),
          emitted_(host.counter("emitted_total", "records emitted")),
          mark_(host.counter("delivered_mark", "the last delivered record number", MP_GAUGE)) {
        if (exitWhenDelivered_ && count_ == 0) {
            throw mp::Error("exit_when_delivered needs a count");
        }
        if (!checkpoint_.empty()) {
            std::ifstream in(checkpoint_);
            uint64_t n = 0;
            if (in >> n) {
                delivered_ = n;
            } else if (in.is_open() && !in.eof()) {
                throw mp::Error("checkpoint " + checkpoint_ + " does not hold a number");
            }
        }
        next_ = delivered_ + 1;
        mark_.set(static_cast<int64_t>(delivered_));
        host.set("records.backpressure", "wait");
    }

    void start() override {
        stopping_ = false;
        if (exitWhenDelivered_ && delivered_ >= count_) {
            host().requestShutdown(0, "all " + std::to_string(count_) + " records delivered");
        }
        thread_ = std::thread([this] { run(); });
    }
    void stop() override {
        stopping_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    ~CounterSource() override { stop(); }

    void onDelivered(uint64_t seq) override {
        delivered_ = seq;
        mark_.set(static_cast<int64_t>(seq));
        if (!checkpoint_.empty()) {
            std::string err = mp::writeFileAtomic(checkpoint_, std::to_string(seq) + "\n");
            if (!err.empty()) {
                host().warn("checkpoint not written: " + err);
            }
        }
        if (exitWhenDelivered_ && seq >= count_) {
            host().requestShutdown(0, "all " + std::to_string(count_) + " records delivered");
        }
    }

  private:
    void run() {
        auto t0 = std::chrono::steady_clock::now();
        uint64_t sent = 0;
        std::string payload;
        while (!stopping_) {
            const uint64_t n = next_ + batch_.size();  // the number of the record made now
            if (count_ != 0 && n > count_) {
                break;
            }
            if (rate_ > 0) {
                auto due = t0 + std::chrono::microseconds(sent * 1000000 / rate_);
                while (!stopping_ && std::chrono::steady_clock::now() < due) {
                    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
                        due - std::chrono::steady_clock::now(), std::chrono::milliseconds(20)));
                }
            }
            payload = "{\"n\":" + std::to_string(n) + ",\"pad\":\"";
            size_t fill =
                payloadBytes_ > payload.size() + 2 ? payloadBytes_ - payload.size() - 2 : 0;
            payload.append(fill, 'x');
            payload += "\"}";
            ++sent;
            if (batchSize_ == 1) {
                mp_status st = host().emitRecord(stream_, payload, n, host().nowNs());
                if (!handed(st, st == MP_OK ? 1 : 0)) {
                    break;
                }
                continue;
            }
            // Gathered and handed over together; the payload string is moved in, not copied.
            batch_.add(stream_, std::move(payload), n, host().nowNs());
            if (batch_.size() == batchSize_ || n == count_ || rate_ > 0) {
                size_t taken = 0;
                mp_status st = batch_.emit(host(), &taken);
                if (!handed(st, taken)) {
                    break;
                }
            }
        }
        // (records gathered when stopping are not emitted: a restart makes them again)
    }

    // `taken` records from next_ on were taken; `st` is the answer for the one after them.
    // False: stop emitting.
    bool handed(mp_status st, size_t taken) {
        emitted_.add(taken);
        next_ += taken;
        if (st != MP_OK && st != MP_ECLOSED) {  // MP_ECLOSED: the host is stopping
            host().warn("record " + std::to_string(next_) + " refused (status " +
                        std::to_string(st) + ")");
        }
        return st == MP_OK;
    }

    std::string stream_;
    uint64_t count_;
    int64_t rate_;
    size_t payloadBytes_;
    std::string checkpoint_;
    bool exitWhenDelivered_;
    size_t batchSize_;
    mp::RecordBatch batch_;
    mp::Counter emitted_;
    mp::Counter mark_;
    std::atomic<uint64_t> delivered_{0};
    uint64_t next_ = 1;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace

MP_DECLARE_PLUGIN(CounterSource, MP_KIND_SOURCE, "source-counter", "1.0.0",
                  "Emits numbered records and checkpoints what is delivered (an example source)",
                  kProps, 0)
