// SPDX-License-Identifier: Apache-2.0
// capture-hexlines: a second capture source, as small as one can be. It reads frames from a
// text file, one per line:
//
//   # comment lines and blank lines are skipped
//   linktype 1                      (optional, before the first frame: a DLT_* number; 1 default)
//   <ts_ns> <orig_len> <hex bytes>  (capture time in ns since the epoch, length on the wire,
//                                    the captured bytes; orig_len > captured marks a truncation)
//
// It shows the capture side of the ABI with nothing from the host but the installed SDK: its
// own thread calling emit_frames(), the host settings a capture gives (capture.server_ports,
// capture.threads), the standard counter MP_CAPTURE_TRUNCATED that the host puts in the
// report's `capture` object whatever the plugin is called, and MP_EVENT_INPUT_END at the end.
// A malformed line is counted and named in one warning; the rest of the file is still read.
#include <atomic>
#include <cstdint>
#include <fstream>
#include <mp/sdk.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"file", MP_PROP_STRING, MP_PROP_REQUIRED, nullptr, "the hex-lines file to read", 0, 0, nullptr},
    {"port", MP_PROP_STRING_LIST, 0, "3306", "MySQL server port(s)", 0, 0, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

// One frame line into ts, orig_len and bytes; false when it is not one.
bool parseFrame(const std::string& line, uint64_t& ts, uint64_t& origLen, std::string& bytes) {
    size_t i = 0;
    auto number = [&](uint64_t& out) {
        size_t start = i;
        out = 0;
        while (i < line.size() && line[i] >= '0' && line[i] <= '9' && i - start < 19) {
            out = out * 10 + static_cast<uint64_t>(line[i++] - '0');
        }
        bool ok = i > start && (i == line.size() || line[i] == ' ');
        while (i < line.size() && line[i] == ' ') {
            ++i;
        }
        return ok;
    };
    if (!number(ts) || !number(origLen)) {
        return false;
    }
    size_t end = line.find_last_not_of(" \r");
    size_t hexLen = end == std::string::npos || end < i ? 0 : end + 1 - i;
    if (hexLen == 0 || hexLen % 2 != 0 || hexLen / 2 > 262144) {
        return false;
    }
    bytes.resize(hexLen / 2);
    for (size_t k = 0; k < bytes.size(); ++k) {
        int hi = mp::hexDigit(line[i + 2 * k]);
        int lo = mp::hexDigit(line[i + 2 * k + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        bytes[k] = static_cast<char>(hi << 4 | lo);
    }
    return origLen >= bytes.size() && origLen <= UINT32_MAX;
}

class HexLinesCapture : public mp::Plugin {
  public:
    HexLinesCapture(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          path_(cfg.str("file")),
          frames_(host.counter("frames_total", "frames read from the file")),
          truncated_(host.counter(MP_CAPTURE_TRUNCATED, "frames shorter than on the wire")),
          badLines_(host.counter("bad_lines_total", "lines that are not a frame (skipped)")) {
        in_.open(path_);
        if (!in_) {
            throw mp::Error("cannot open " + path_);
        }
        std::string ports;
        for (const auto& p : cfg.list("port")) {
            ports += (ports.empty() ? "" : ",") + p;
        }
        host.set("capture.server_ports", ports);
        host.set("capture.threads", "1");
    }

    void start() override {
        stopping_ = false;
        thread_ = std::thread([this] { run(); });
    }
    void stop() override {
        stopping_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    ~HexLinesCapture() override { stop(); }

  private:
    void run() {
        uint32_t linkType = MP_LINK_ETHERNET;
        bool framesSeen = false;
        std::string line;
        std::string bytes;
        uint64_t lineNo = 0;
        uint64_t bad = 0;
        while (!stopping_ && std::getline(in_, line)) {
            ++lineNo;
            if (line.empty() || line[0] == '#' || line == "\r") {
                continue;
            }
            uint64_t ts = 0;
            uint64_t origLen = 0;
            if (!framesSeen && line.rfind("linktype ", 0) == 0) {
                std::string rest = line.substr(9) + " 1 00";  // a number, as a frame's ts
                if (parseFrame(rest, ts, origLen, bytes) && ts <= UINT32_MAX) {
                    linkType = static_cast<uint32_t>(ts);
                    continue;
                }
            }
            if (!parseFrame(line, ts, origLen, bytes)) {
                if (bad++ == 0) {
                    host().warn(path_ + ":" + std::to_string(lineNo) + ": not a frame, skipped");
                }
                badLines_.add();
                continue;
            }
            framesSeen = true;
            mp_frame f{};
            f.ts_ns = ts;
            f.link_type = linkType;
            f.orig_len = static_cast<uint32_t>(origLen);
            f.flags = MP_FRAME_WAIT;  // a file: wait for queue room rather than drop
            f.data = {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
            frames_.add();
            if (origLen > bytes.size()) {
                truncated_.add();
            }
            host().emitFrames(&f, 1);
        }
        if (bad > 1) {
            host().warn(path_ + ": " + std::to_string(bad) + " lines were not frames");
        }
        if (!stopping_) {
            host().emit(MP_EVENT_INPUT_END, "", 0, 0, "");
        }
    }

    std::string path_;
    std::ifstream in_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    mp::Counter frames_;
    mp::Counter truncated_;
    mp::Counter badLines_;
};

}  // namespace

MP_DECLARE_PLUGIN(HexLinesCapture, MP_KIND_CAPTURE, "capture-hexlines", "1.0.0",
                  "Reads captured frames from a text file of hex lines (an example capture)",
                  kProps, 0)
