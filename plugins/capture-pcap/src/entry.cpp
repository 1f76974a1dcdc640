// SPDX-License-Identifier: Apache-2.0
// capture-pcap: frames from live interfaces or pcap/pcapng files, handed to the host in batches.
// The host owns link/IP/TCP parsing; this plugin only reads, filters (BPF) and counts.
#include <pcap/pcap.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mp/sdk.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

// clang-format off
const mp_property kProps[] = {
    {"device", MP_PROP_STRING_LIST, 0, "", "network devices to capture on (\"lo,eth0\", \"any\")", 0, 0, nullptr},
    {"file", MP_PROP_STRING, 0, "", "read this pcap/pcapng file instead of devices", 0, 0, nullptr},
    {"port", MP_PROP_STRING_LIST, 0, "3306", "MySQL server port(s)", 0, 0, nullptr},
    {"filter", MP_PROP_STRING, 0, "", "extra BPF expression, ANDed with the port filter", 0, 0, nullptr},
    {"snaplen", MP_PROP_INT, 0, "0", "bytes captured per packet (0: 262144)", 0, 262144, nullptr},
    {"buffer_mb", MP_PROP_INT, 0, "32", "kernel capture buffer per device, MiB", 1, 4096, nullptr},
    {"promiscuous", MP_PROP_BOOL, 0, "false", "put devices in promiscuous mode", 0, 0, nullptr},
    {"immediate", MP_PROP_BOOL, 0, "true", "deliver packets as they arrive (no kernel batching delay)", 0, 0, nullptr},
    {"loop", MP_PROP_BOOL, 0, "false", "replay the file again and again", 0, 0, nullptr},
    {"speed", MP_PROP_DOUBLE, 0, "0", "file replay speed: 0 as fast as possible, 1 recorded speed, 2 twice as fast", 0, 1000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

constexpr size_t kBatch = 64;

struct PcapCloser {
    void operator()(pcap_t* p) const { pcap_close(p); }
};
using PcapPtr = std::unique_ptr<pcap_t, PcapCloser>;

class PcapCapture : public mp::Plugin {
  public:
    PcapCapture(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          devices_(cfg.list("device")),
          file_(cfg.str("file")),
          loop_(cfg.boolean("loop")),
          speed_(cfg.f64("speed")),
          packets_(host.counter("packets_total", "packets read from files or interfaces")),
          bytes_(host.counter("bytes_total", "bytes read (as captured)")),
          truncated_(host.counter("truncated_total", "packets cut short by the snapshot length")),
          queueDrops_(host.counter("queue_dropped_total",
                                   "frames the host refused because its queue was full")),
          kernelDrops_(host.counter("kernel_dropped", "packets dropped by the kernel (pcap_stats)",
                                    MP_GAUGE)),
          ifDrops_(host.counter("interface_dropped",
                                "packets dropped by the interface (pcap_stats)", MP_GAUGE)),
          corrupt_(host.counter("file_errors_total", "capture files that ended in an error")) {
        int snaplen = static_cast<int>(cfg.i64("snaplen"));
        snaplen_ = snaplen == 0 ? 262144 : snaplen;
        filter_ = buildFilter(cfg.list("port"), cfg.str("filter"));
        if (file_.empty() && devices_.empty()) {
            throw mp::Error(
                "nothing to capture: set device (probe.device) or file (probe.file / -r)");
        }
        if (!file_.empty() && !devices_.empty()) {
            throw mp::Error("set either device or file, not both");
        }
        if (!file_.empty()) {
            sources_.push_back(openFile());
        } else {
            for (const auto& dev : devices_) {
                sources_.push_back(openLive(dev, cfg));
            }
        }
    }

    void start() override {
        stopping_ = false;
        for (size_t i = 0; i < sources_.size(); ++i) {
            threads_.emplace_back([this, i] { run(static_cast<uint32_t>(i)); });
        }
    }

    void stop() override {
        stopping_ = true;
        for (auto& p : sources_) {
            if (p) {
                pcap_breakloop(p.get());
            }
        }
        for (auto& t : threads_) {
            t.join();
        }
        threads_.clear();
        updateStats();
    }

  private:
    static std::string buildFilter(const std::vector<std::string>& ports,
                                   const std::string& extra) {
        std::string f;
        for (const auto& p : ports) {
            size_t used = 0;
            long n = -1;
            try {
                n = std::stol(p, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used != p.size() || n < 1 || n > 65535) {
                throw mp::Error("port '" + p + "' is not a TCP port (1..65535)");
            }
            f += (f.empty() ? "" : " or ") + std::string("tcp port ") + p;
        }
        if (f.empty()) {
            throw mp::Error("port: at least one MySQL port is needed");
        }
        f = "(" + f + ")";
        if (!extra.empty()) {
            f += " and (" + extra + ")";
        }
        return f;
    }

    void applyFilter(pcap_t* p, const std::string& what) {
        bpf_program prog{};
        if (pcap_compile(p, &prog, filter_.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
            throw mp::Error("bad filter '" + filter_ + "' for " + what + ": " + pcap_geterr(p));
        }
        int rc = pcap_setfilter(p, &prog);
        pcap_freecode(&prog);
        if (rc != 0) {
            throw mp::Error("cannot set filter on " + what + ": " + pcap_geterr(p));
        }
    }

    PcapPtr openFile() {
        char err[PCAP_ERRBUF_SIZE] = {0};
        PcapPtr p(pcap_open_offline_with_tstamp_precision(file_.c_str(), PCAP_TSTAMP_PRECISION_NANO,
                                                          err));
        if (!p) {
            throw mp::Error("cannot read " + file_ + ": " + err);
        }
        applyFilter(p.get(), file_);
        return p;
    }

    PcapPtr openLive(const std::string& dev, const mp::Config& cfg) {
        char err[PCAP_ERRBUF_SIZE] = {0};
        PcapPtr p(pcap_create(dev.c_str(), err));
        if (!p) {
            throw mp::Error("cannot open device " + dev + ": " + err);
        }
        pcap_set_snaplen(p.get(), snaplen_);
        pcap_set_promisc(p.get(), cfg.boolean("promiscuous") ? 1 : 0);
        pcap_set_immediate_mode(p.get(), cfg.boolean("immediate") ? 1 : 0);
        pcap_set_buffer_size(p.get(), static_cast<int>(cfg.i64("buffer_mb")) * 1024 * 1024);
        pcap_set_timeout(p.get(), 100);
        pcap_set_tstamp_precision(p.get(), PCAP_TSTAMP_PRECISION_NANO);
        int rc = pcap_activate(p.get());
        if (rc < 0) {
            std::string why = rc == PCAP_ERROR_NO_SUCH_DEVICE ? "no such device"
                              : rc == PCAP_ERROR_PERM_DENIED
                                  ? "permission denied (run as root or grant CAP_NET_RAW)"
                                  : pcap_geterr(p.get());
            throw mp::Error("cannot capture on " + dev + ": " + why);
        }
        if (rc > 0) {
            host().warn("device " + dev + ": " + pcap_statustostr(rc));
        }
        applyFilter(p.get(), "device " + dev);
        return p;
    }

    // Frames collected for one emit_frames() call. pcap reuses its buffer per packet, so a
    // batch keeps copies (the storage is reused, not reallocated).
    struct Batch {
        PcapCapture* self;
        uint32_t link;
        uint32_t source;
        std::vector<mp_frame> frames;
        std::vector<std::vector<uint8_t>> storage{kBatch};
        uint64_t lastTs = 0;

        void add(const pcap_pkthdr* hdr, const u_char* data) {
            lastTs = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ULL +
                     static_cast<uint64_t>(hdr->ts.tv_usec);  // nanosecond precision
            self->packets_.add();
            self->bytes_.add(hdr->caplen);
            if (hdr->caplen < hdr->len) {
                self->truncated_.add();
            }
            auto& buf = storage[frames.size()];
            buf.assign(data, data + hdr->caplen);
            mp_frame f{};
            f.ts_ns = lastTs;
            f.link_type = link;
            f.orig_len = hdr->len;
            f.source = source;
            f.data = mp_bytes{buf.data(), buf.size()};
            frames.push_back(f);
            if (frames.size() == kBatch) {
                flush();
            }
        }
        void flush() {
            if (frames.empty()) {
                return;
            }
            if (self->host().emitFrames(frames.data(), frames.size()) == MP_EAGAIN) {
                self->queueDrops_.add(1);
            }
            frames.clear();
        }
    };

    void run(uint32_t index) {
        pcap_t* p = sources_[index].get();
        Batch batch{this, static_cast<uint32_t>(pcap_datalink(p)), index, {}};
        batch.frames.reserve(kBatch);
        if (file_.empty()) {
            runLive(p, batch, index);
        } else {
            runFile(batch, index);
        }
        batch.flush();
    }

    void runLive(pcap_t* p, Batch& batch, uint32_t index) {
        auto lastStats = std::chrono::steady_clock::now();
        while (!stopping_) {
            // Everything the kernel has ready, then hand it over: no frame waits for a full
            // batch (in immediate mode the read blocks until traffic comes).
            int n = pcap_dispatch(
                p, 4096,
                [](u_char* user, const pcap_pkthdr* hdr, const u_char* data) {
                    reinterpret_cast<Batch*>(user)->add(hdr, data);
                },
                reinterpret_cast<u_char*>(&batch));
            batch.flush();
            if (n == PCAP_ERROR_BREAK) {
                break;
            }
            if (n < 0) {
                host().error(std::string("capture failed: ") + pcap_geterr(p));
                host().requestShutdown(2, "capture failed");
                break;
            }
            auto now = std::chrono::steady_clock::now();
            if (index == 0 && now - lastStats > std::chrono::seconds(1)) {
                updateStats();
                lastStats = now;
            }
        }
    }

    void runFile(Batch& batch, uint32_t index) {
        pcap_t* p = sources_[index].get();
        uint64_t firstTs = 0;
        uint64_t read = 0;
        auto wallStart = std::chrono::steady_clock::now();
        while (!stopping_) {
            pcap_pkthdr* hdr = nullptr;
            const u_char* data = nullptr;
            int rc = pcap_next_ex(p, &hdr, &data);
            if (rc == 1) {
                if (speed_ > 0) {
                    uint64_t ts = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ULL +
                                  static_cast<uint64_t>(hdr->ts.tv_usec);
                    pace(firstTs, ts, wallStart, batch);
                }
                ++read;
                batch.add(hdr, data);
            } else if (rc == PCAP_ERROR_BREAK) {
                break;
            } else if (rc == PCAP_ERROR) {
                batch.flush();
                corrupt_.add();
                host().warn("file " + file_ + ": read error after " + std::to_string(read) +
                            " packets, reporting what was read: " + pcap_geterr(p));
                break;
            } else {  // end of file (0 cannot happen offline)
                batch.flush();
                if (loop_ && !stopping_) {
                    sources_[index] = openFile();
                    p = sources_[index].get();
                    firstTs = 0;
                    continue;
                }
                break;
            }
        }
        batch.flush();
        if (!stopping_) {
            host().emit(MP_EVENT_INPUT_END, "", 0, 0, "");
        }
    }

    // Sleeps so that packet time advances at `speed` times wall time.
    void pace(uint64_t& firstTs, uint64_t ts, std::chrono::steady_clock::time_point& wallStart,
              Batch& batch) {
        if (firstTs == 0) {
            firstTs = ts;
            wallStart = std::chrono::steady_clock::now();
            return;
        }
        if (ts <= firstTs) {
            return;
        }
        auto due = wallStart + std::chrono::nanoseconds(static_cast<int64_t>(
                                   static_cast<double>(ts - firstTs) / speed_));
        if (due > std::chrono::steady_clock::now()) {
            batch.flush();
            while (!stopping_ && due > std::chrono::steady_clock::now()) {
                std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
                    due - std::chrono::steady_clock::now(), std::chrono::milliseconds(100)));
            }
        }
    }

    void updateStats() {
        if (!file_.empty()) {
            return;
        }
        int64_t drops = 0;
        int64_t ifdrops = 0;
        for (auto& p : sources_) {
            pcap_stat st{};
            if (p && pcap_stats(p.get(), &st) == 0) {
                drops += st.ps_drop;
                ifdrops += st.ps_ifdrop;
            }
        }
        kernelDrops_.set(drops);
        ifDrops_.set(ifdrops);
    }

    std::vector<std::string> devices_;
    std::string file_;
    bool loop_;
    double speed_;
    int snaplen_ = 262144;
    std::string filter_;
    std::vector<PcapPtr> sources_;
    std::vector<std::thread> threads_;
    std::atomic<bool> stopping_{false};
    mp::Counter packets_;
    mp::Counter bytes_;
    mp::Counter truncated_;
    mp::Counter queueDrops_;
    mp::Counter kernelDrops_;
    mp::Counter ifDrops_;
    mp::Counter corrupt_;
};

}  // namespace

MP_DECLARE_PLUGIN(PcapCapture, MP_KIND_CAPTURE, "capture-pcap", "0.1.0",
                  "Captures MySQL traffic with libpcap from live devices or pcap/pcapng files",
                  kProps, 0)
