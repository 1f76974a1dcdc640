// SPDX-License-Identifier: Apache-2.0
// capture-pcap: frames from live interfaces or pcap/pcapng files, handed to the host in batches.
// The host owns link/IP/TCP parsing; this plugin only reads, filters (BPF) and counts.
#include <fcntl.h>
#include <linux/if_packet.h>
#include <pcap/pcap.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mp/sdk.hpp>
#include <string>
#include <thread>
#include <vector>

#include "pcap_file.hpp"

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
    {"immediate", MP_PROP_BOOL, 0, "false", "deliver each packet at once instead of in kernel batches (costs CPU; latencies come from packet timestamps either way)", 0, 0, nullptr},
    {"batch_ms", MP_PROP_INT, 0, "50", "live, without immediate: read the kernel buffer at most every N ms (fewer wake-ups, warmer caches: less CPU per packet; never while the traffic of one pause could fill an eighth of the buffer; 0: on every kernel block)", 0, 1000, nullptr},
    {"fanout", MP_PROP_INT, 0, "1", "live: capture threads per device, each reading its own kernel buffer (buffer_mb each); the kernel hands each connection to one of them by a hash of its addresses and ports, both directions alike (PACKET_FANOUT_HASH). Reports do not depend on it", 1, 16, nullptr},
    {"loop", MP_PROP_BOOL, 0, "false", "replay the file again and again", 0, 0, nullptr},
    {"speed", MP_PROP_DOUBLE, 0, "0", "file replay speed: 0 as fast as possible, 1 recorded speed, 2 twice as fast", 0, 1000, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

constexpr size_t kBatch = 64;
constexpr int kLiveRead = 4096;  // packets per pcap_dispatch()

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
        immediate_ = cfg.boolean("immediate");
        batchMs_ = cfg.i64("batch_ms");
        bufferBytes_ = static_cast<double>(cfg.i64("buffer_mb")) * 1024 * 1024;
        int snaplen = static_cast<int>(cfg.i64("snaplen"));
        snaplen_ = snaplen == 0 ? 262144 : snaplen;
        filter_ = buildFilter(cfg.list("port"), cfg.str("filter"));
        extraFilter_ = !cfg.str("filter").empty();
        if (file_.empty() && devices_.empty()) {
            throw mp::Error(
                "nothing to capture: set device (probe.device) or file (probe.file / -r)");
        }
        if (!file_.empty() && !devices_.empty()) {
            throw mp::Error("set either device or file, not both");
        }
        if (!file_.empty()) {
            if (openClassic(file_)) {
                // Classic pcap: read through one buffer, frames handed over in place.
                PcapPtr dead(pcap_open_dead_with_tstamp_precision(
                    static_cast<int>(reader_.linkType()), 262144, PCAP_TSTAMP_PRECISION_NANO));
                if (!dead) {
                    throw mp::Error("cannot prepare a filter for " + file_);
                }
                compileFilter(dead.get(), file_, prog_);
                haveProg_ = true;
                useReader_ = true;
                sources_.push_back(std::move(dead));
            } else {
                sources_.push_back(openFile());  // pcapng and others: libpcap
            }
        } else {
            const auto fanout = static_cast<int>(cfg.i64("fanout"));
            for (const auto& dev : devices_) {
                int group = -1;  // the kernel's id of this device's fanout group
                for (int i = 0; i < fanout; ++i) {
                    sources_.push_back(openLive(dev, cfg));
                    if (fanout > 1) {
                        joinFanout(sources_.back().get(), dev, group);
                    }
                }
                if (fanout > 1) {
                    host.info("device " + dev + ": " + std::to_string(fanout) +
                              " capture threads (fanout group " + std::to_string(group) + ")");
                }
            }
        }
        // What the host plans its stream layer with: the server side of a connection, and how
        // many threads hand it frames (one per device; a file is read by one).
        std::string ports;
        for (const auto& p : cfg.list("port")) {
            ports += (ports.empty() ? "" : ",") + p;
        }
        host.set("capture.server_ports", ports);
        host.set("capture.threads", std::to_string(sources_.size()));
    }

    void start() override {
        stopping_ = false;
        inline_ = host().get("stream.inline").value_or("false") == "true";
        for (size_t i = 0; i < sources_.size(); ++i) {
            threads_.emplace_back([this, i] { run(static_cast<uint32_t>(i)); });
        }
    }

    ~PcapCapture() override {
        if (haveProg_) {
            pcap_freecode(&prog_);
        }
        sources_.clear();  // pcap_close before the memory behind its FILE goes away
        for (auto& [addr, size] : maps_) {
            ::munmap(addr, size);
        }
        if (fileFd_ >= 0) {
            ::close(fileFd_);
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

    void compileFilter(pcap_t* p, const std::string& what, bpf_program& prog) {
        if (pcap_compile(p, &prog, filter_.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
            throw mp::Error("bad filter '" + filter_ + "' for " + what + ": " + pcap_geterr(p));
        }
    }

    void applyFilter(pcap_t* p, const std::string& what) {
        bpf_program prog{};
        compileFilter(p, what, prog);
        int rc = pcap_setfilter(p, &prog);
        pcap_freecode(&prog);
        if (rc != 0) {
            throw mp::Error("cannot set filter on " + what + ": " + pcap_geterr(p));
        }
    }

    PcapPtr openFile() {
        char err[PCAP_ERRBUF_SIZE] = {0};
        // The file is mapped once and read through an unbuffered memory FILE: libpcap's
        // per-packet reads become one memcpy each, with no read() system calls.
        std::FILE* fp = openMapped(file_);
        PcapPtr p(pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, err));
        if (!p) {
            std::fclose(fp);
            throw mp::Error("cannot read " + file_ + ": " + err);
        }
        applyFilter(p.get(), file_);
        return p;
    }

    // A regular file that starts as classic pcap: read by our reader through a buffer of 1 MiB
    // refilled by read(2). The kernel's copy lands in a buffer that stays in cache, where a
    // mapping costs page faults, page-table work and a cache miss at every page.
    bool openClassic(const std::string& path) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            throw mp::Error("cannot read " + path + ": " + std::strerror(errno));
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            return false;
        }
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (!reader_.openFd(fd)) {
            ::close(fd);
            if (!reader_.error().empty()) {
                throw mp::Error("cannot read " + path + ": " + reader_.error());
            }
            return false;
        }
        fileFd_ = fd;
        return true;
    }

    std::FILE* openMapped(const std::string& path) {
        if (!maps_.empty()) {  // looping: the same mapping again
            std::FILE* fp = ::fmemopen(maps_.front().first, maps_.front().second, "rb");
            if (fp == nullptr) {
                throw mp::Error("cannot read " + path + ": " + std::strerror(errno));
            }
            std::setvbuf(fp, nullptr, _IOFBF, 1 << 16);
            return fp;
        }
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            throw mp::Error("cannot read " + path + ": " + std::strerror(errno));
        }
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
            ::close(fd);
            // Not a regular file (a pipe, a device): plain stdio.
            std::FILE* fp = std::fopen(path.c_str(), "rb");
            if (fp == nullptr) {
                throw mp::Error("cannot read " + path + ": " + std::strerror(errno));
            }
            return fp;
        }
        auto size = static_cast<size_t>(st.st_size);
        void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);
        if (addr == MAP_FAILED) {
            throw mp::Error("cannot map " + path + ": " + std::strerror(errno));
        }
        ::madvise(addr, size, MADV_SEQUENTIAL);
        std::FILE* fp = ::fmemopen(addr, size, "rb");
        if (fp == nullptr) {
            ::munmap(addr, size);
            throw mp::Error("cannot read " + path + ": " + std::strerror(errno));
        }
        std::setvbuf(fp, nullptr, _IOFBF, 1 << 16);
        maps_.emplace_back(addr, size);
        return fp;
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

    // Puts a live handle in `group` (-1: a new group, whose id the kernel picks and `group`
    // then holds): packets are spread over the group's sockets by a symmetric flow hash, so
    // each connection is read by one thread, in order. Fragments are reassembled first (a
    // fragment has no ports to hash).
    static void joinFanout(pcap_t* p, const std::string& dev, int& group) {
        const int fd = pcap_fileno(p);
        uint32_t flags = PACKET_FANOUT_FLAG_DEFRAG | (group < 0 ? PACKET_FANOUT_FLAG_UNIQUEID : 0);
        uint32_t arg =
            (group < 0 ? 0u : static_cast<uint32_t>(group)) | ((PACKET_FANOUT_HASH | flags) << 16);
        if (::setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) != 0) {
            throw mp::Error("device " + dev + ": cannot spread capture over threads (" +
                            "PACKET_FANOUT: " + std::strerror(errno) + "); use fanout: 1");
        }
        if (group < 0) {
            uint32_t got = 0;
            socklen_t len = sizeof got;
            if (::getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &got, &len) != 0) {
                throw mp::Error("device " + dev + ": PACKET_FANOUT: " + std::strerror(errno));
            }
            group = static_cast<int>(got & 0xffff);
        }
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
        bool offline = false;  // files wait for queue room; live capture never blocks
        bool direct = false;   // each live packet handed over at once, from libpcap's buffer
        uint64_t packets = 0;  // counted per batch, not per packet
        uint64_t bytes = 0;
        uint64_t truncated = 0;
        uint64_t readSinceWake = 0;  // live: bytes since the capture thread last woke
        bool fullLast = false;       // the last emit_frames() call was a full batch

        void add(const pcap_pkthdr* hdr, const u_char* data) {
            const uint64_t ts = static_cast<uint64_t>(hdr->ts.tv_sec) * 1000000000ULL +
                                static_cast<uint64_t>(hdr->ts.tv_usec);  // nanosecond precision
            if (direct) {
                // The host works on the frame inside emitFrames (one worker, this thread), so
                // libpcap's buffer is good for that long: no copy. Counters still go per batch.
                lastTs = ts;
                ++packets;
                bytes += hdr->caplen;
                truncated += hdr->caplen < hdr->len ? 1 : 0;
                mp_frame f{};
                f.ts_ns = ts;
                f.link_type = link;
                f.orig_len = hdr->len;
                f.source = source;
                f.flags = MP_FRAME_MORE;  // flush() ends the read
                f.data = mp_bytes{data, hdr->caplen};
                if (self->host().emitFrames(&f, 1) == MP_EAGAIN) {
                    self->queueDrops_.add(1);
                }
                if (packets >= kBatch) {
                    flush();
                }
                return;
            }
            // pcap reuses its buffer for the next packet: keep a copy.
            auto& buf = storage[frames.size()];
            buf.assign(data, data + hdr->caplen);
            addInPlace(ts, buf.data(), hdr->caplen, hdr->len);
        }
        // `data` stays valid until flush() (mapped file, or storage).
        void addInPlace(uint64_t ts, const uint8_t* data, uint32_t caplen, uint32_t len) {
            lastTs = ts;
            ++packets;
            bytes += caplen;
            truncated += caplen < len ? 1 : 0;
            mp_frame f{};
            f.ts_ns = ts;
            f.link_type = link;
            f.orig_len = len;
            f.source = source;
            f.flags = offline ? MP_FRAME_WAIT : 0;
            f.data = mp_bytes{data, caplen};
            frames.push_back(f);
            if (frames.size() == kBatch) {
                flush();
            }
        }
        void flush() {
            if (frames.empty()) {
                if (packets != 0) {  // direct mode: the end of the read, and the counters
                    self->host().emitFrames(nullptr, 0);
                    self->packets_.add(packets);
                    self->bytes_.add(bytes);
                    self->truncated_.add(truncated);
                    readSinceWake += bytes;
                    packets = bytes = truncated = 0;
                }
                return;
            }
            self->packets_.add(packets);
            self->bytes_.add(bytes);
            if (truncated != 0) {
                self->truncated_.add(truncated);
            }
            readSinceWake += bytes;
            packets = bytes = truncated = 0;
            if (self->host().emitFrames(frames.data(), frames.size()) == MP_EAGAIN) {
                self->queueDrops_.add(1);
            }
            fullLast = frames.size() == kBatch;
            frames.clear();
        }
        // Live: the end of one read. A host takes a full batch to mean that more follows at
        // once and may leave it queued (it wakes its workers for short batches); when the read
        // ended on a full batch, an empty call says that nothing does.
        void endRead() {
            flush();
            if (fullLast) {
                self->host().emitFrames(nullptr, 0);
                fullLast = false;
            }
        }
    };

    void run(uint32_t index) {
        pcap_t* p = sources_[index].get();
        Batch batch{this, static_cast<uint32_t>(pcap_datalink(p)), index, {}};
        batch.frames.reserve(kBatch);
        batch.offline = !file_.empty();
        // The host decodes on this thread (one capture thread in all, one worker: it said so
        // through "stream.inline"), so live frames need not be copied out of libpcap's buffer.
        batch.direct = file_.empty() && inline_;
        if (file_.empty()) {
            runLive(p, batch, index);
        } else if (useReader_) {
            batch.link = reader_.linkType();
            runClassic(batch);
        } else {
            runFile(batch, index);
        }
        batch.flush();
    }

    void runLive(pcap_t* p, Batch& batch, uint32_t index) {
        auto lastStats = std::chrono::steady_clock::now();
        auto lastWake = lastStats;
        // Live reads are spaced batch_ms apart (not in immediate mode).
        const std::chrono::steady_clock::duration batchWait =
            immediate_ ? std::chrono::milliseconds(0) : std::chrono::milliseconds(batchMs_);
        while (!stopping_) {
            // Everything the kernel has ready, then hand it over: no frame waits for a full
            // batch (in immediate mode the read blocks until traffic comes).
            int n = pcap_dispatch(
                p, kLiveRead,
                [](u_char* user, const pcap_pkthdr* hdr, const u_char* data) {
                    reinterpret_cast<Batch*>(user)->add(hdr, data);
                },
                reinterpret_cast<u_char*>(&batch));
            batch.endRead();
            if (n == PCAP_ERROR_BREAK) {
                break;
            }
            if (n < 0) {
                host().error(std::string("capture failed: ") + pcap_geterr(p));
                host().requestShutdown(2, "capture failed");
                break;
            }
            auto now = std::chrono::steady_clock::now();
            // Between reads the kernel buffer holds the traffic: a capture thread that wakes for
            // every kernel block (hundreds of times a second under load) spends more on cold
            // caches and switches than on the packets. Not when the read was full (the thread
            // is behind) nor when the traffic of one pause could fill an eighth of the buffer.
            const auto awake = now - lastWake;
            const double rate = static_cast<double>(batch.readSinceWake) /
                                std::max(1.0, static_cast<double>(awake.count()));
            if (n >= 0 && n < kLiveRead && awake < batchWait &&
                rate * static_cast<double>(batchWait.count()) < bufferBytes_ / 8.0) {
                std::this_thread::sleep_for(batchWait - awake);
                now = std::chrono::steady_clock::now();
            }
            lastWake = now;
            batch.readSinceWake = 0;
            if (index == 0 && now - lastStats > std::chrono::seconds(1)) {
                updateStats();
                lastStats = now;
            }
        }
    }

    // Classic pcap, read in place from the reader's buffer.
    void runClassic(Batch& batch) {
        uint64_t firstTs = 0;
        uint64_t read = 0;
        auto wallStart = std::chrono::steady_clock::now();
        // The port part of the filter is the host's own server-port test (it counts what it
        // skips), so a file is run through BPF only for an extra expression: the interpreter
        // costs more per packet than the rest of the capture.
        const bool filter = extraFilter_;
        mp::capture::PcapRecord r;
        while (!stopping_) {
            if (!batch.frames.empty() && reader_.needsRefill()) {
                batch.flush();  // the frames point into the buffer the refill overwrites
            }
            auto n = reader_.next(r);
            if (n == mp::capture::ClassicPcapReader::Next::Packet) {
                ++read;
                if (filter) {
                    pcap_pkthdr h{};
                    h.caplen = r.caplen;
                    h.len = r.len;
                    if (pcap_offline_filter(&prog_, &h, r.data) == 0) {
                        continue;
                    }
                }
                if (speed_ > 0) {
                    pace(firstTs, r.tsNs, wallStart, batch);
                }
                batch.addInPlace(r.tsNs, r.data, r.caplen, r.len);
                continue;
            }
            batch.flush();
            if (n == mp::capture::ClassicPcapReader::Next::Corrupt) {
                readError(batch, read, reader_.error());
                break;
            }
            if (loop_ && !stopping_) {
                if (!reader_.rewind()) {
                    readError(batch, read, reader_.error());
                    break;
                }
                firstTs = 0;
                continue;
            }
            break;
        }
        inputEnded(batch);
    }

    // A file that ends in an error: what was read is reported, with a warning.
    void readError(Batch& batch, uint64_t read, const std::string& why) {
        batch.flush();
        corrupt_.add();
        host().warn("file " + file_ + ": read error after " + std::to_string(read) +
                    " packets, reporting what was read: " + why);
    }
    // The input is done (unless the host is stopping us): the host closes every stream.
    void inputEnded(Batch& batch) {
        batch.flush();
        if (!stopping_) {
            host().emit(MP_EVENT_INPUT_END, "", 0, 0, "");
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
                readError(batch, read, pcap_geterr(p));
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
        inputEnded(batch);
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
    bool immediate_ = false;
    int64_t batchMs_ = 50;
    double bufferBytes_ = 0;
    std::string filter_;
    std::vector<PcapPtr> sources_;
    std::vector<std::pair<void*, size_t>> maps_;  // mapped capture files, unmapped at the end
    mp::capture::ClassicPcapReader reader_;
    bool useReader_ = false;
    int fileFd_ = -1;  // the classic pcap file behind reader_
    bpf_program prog_{};
    bool haveProg_ = false;
    bool extraFilter_ = false;  // `filter` set: BPF runs on classic pcap files too
    bool inline_ = false;       // the host works on this capture's thread ("stream.inline")
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
