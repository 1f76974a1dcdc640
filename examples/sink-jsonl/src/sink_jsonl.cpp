// SPDX-License-Identifier: Apache-2.0
// sink-jsonl: writes every report as one JSON line, to stdout or to a file; with `records:` in
// its slot, every record of those streams too, as {"stream":..,"producer":..,"seq":..,"key":..,
// "payload":"..."} (the payload as a JSON string), each delivered once written and flushed.
// A complete third-party sink: it uses nothing but the installed SDK headers.
#include <charconv>
#include <cstdio>
#include <memory>
#include <mp/sdk.hpp>
#include <mutex>
#include <string>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"path", MP_PROP_STRING, 0, "-", "file to append reports to; \"-\" is standard output", 0, 0, nullptr},
    {"flush", MP_PROP_BOOL, 0, "true", "flush after every report", 0, 0, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

class JsonlSink : public mp::Plugin, public mp::RecordSink {
  public:
    JsonlSink(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          path_(cfg.str("path")),
          flush_(cfg.boolean("flush")),
          written_(host.counter("reports_written_total", "reports written as JSON lines")),
          records_(host.counter("records_written_total", "records written as JSON lines")) {
        if (path_ == "-") {
            out_ = stdout;
        } else {
            out_ = std::fopen(path_.c_str(), "a");
            if (out_ == nullptr) {
                throw mp::Error("cannot open " + path_ + " for appending");
            }
            // Records come by the hundred thousand a second: stdio's 4 KiB would be a write()
            // every few records when nothing asks for a flush. (glibc ignores the size unless
            // it is given the buffer too.)
            buffer_ = std::make_unique<char[]>(kBuffer);
            std::setvbuf(out_, buffer_.get(), _IOFBF, kBuffer);
        }
    }
    ~JsonlSink() override {
        if (out_ != nullptr && out_ != stdout) {
            std::fclose(out_);
        }
    }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        std::string_view json = mp::view(ev.payload);
        std::lock_guard<std::mutex> lock(mutex_);
        // One line per report. A report is compact JSON: a newline can only be whitespace
        // between tokens (strings escape theirs), so a space keeps the line valid JSON.
        for (char c : json) {
            std::fputc(c == '\n' ? ' ' : c, out_);
        }
        std::fputc('\n', out_);
        if (flush_) {
            std::fflush(out_);
        }
        written_.add();
        return std::ferror(out_) != 0 ? MP_RETRY : MP_OK;
    }

    // Records come on the host's record thread for this sink, one at a time and in order per
    // producer: the line's buffer is kept from one record to the next (no allocation each).
    mp_status onRecord(const mp_record& rec, uint64_t token) override {
        std::string& line = line_;
        line.clear();
        line += "{\"stream\":";
        mp::appendJsonString(line, mp::view(rec.stream));
        line += ",\"producer\":";
        mp::appendJsonString(line, mp::view(rec.producer));
        char seq[24];
        auto [end, ec] = std::to_chars(seq, seq + sizeof seq, rec.seq);
        (void)ec;  // 24 digits hold any uint64_t
        line += ",\"seq\":";
        line.append(seq, end);
        line += ",\"key\":";
        mp::appendJsonString(line, mp::view(rec.key));
        line += ",\"id\":";
        mp::appendJsonString(line, mp::view(rec.id));
        line += ",\"payload\":";
        mp::appendJsonString(line, std::string_view(reinterpret_cast<const char*>(rec.payload.data),
                                                    rec.payload.len));
        line += "}\n";
        bool ok = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ok = std::fwrite(line.data(), 1, line.size(), out_) == line.size() &&
                 (!flush_ || std::fflush(out_) == 0);
        }
        if (line.capacity() > (size_t{1} << 20)) {
            std::string().swap(line);  // a large record's buffer is not kept
        }
        records_.add();
        host().recordDone(token, ok ? MP_OK : MP_ERROR);  // handed to the OS, or given up
        return MP_OK;
    }

  private:
    std::string path_;
    bool flush_;
    mp::Counter written_;
    mp::Counter records_;
    std::mutex mutex_;
    static constexpr size_t kBuffer = size_t{1} << 20;
    std::unique_ptr<char[]> buffer_;  // out_'s, until fclose in the destructor
    std::FILE* out_ = nullptr;
    std::string line_;  // onRecord's line (the record thread's alone)
};

}  // namespace

MP_DECLARE_PLUGIN(JsonlSink, MP_KIND_SINK, "sink-jsonl", "1.1.0",
                  "Writes each report and record as one JSON line to stdout or a file", kProps, 0)
