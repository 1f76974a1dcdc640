// SPDX-License-Identifier: Apache-2.0
// sink-jsonl: writes every report as one JSON line, to stdout or to a file.
// A complete third-party sink: it uses nothing but the installed SDK headers.
#include <cstdio>
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

class JsonlSink : public mp::Plugin {
  public:
    JsonlSink(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          path_(cfg.str("path")),
          flush_(cfg.boolean("flush")),
          written_(host.counter("reports_written_total", "reports written as JSON lines")) {
        if (path_ == "-") {
            out_ = stdout;
        } else {
            out_ = std::fopen(path_.c_str(), "a");
            if (out_ == nullptr) {
                throw mp::Error("cannot open " + path_ + " for appending");
            }
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

  private:
    std::string path_;
    bool flush_;
    mp::Counter written_;
    std::mutex mutex_;
    std::FILE* out_ = nullptr;
};

}  // namespace

MP_DECLARE_PLUGIN(JsonlSink, MP_KIND_SINK, "sink-jsonl", "1.0.0",
                  "Writes each report as one JSON line to stdout or a file", kProps, 0)
