// SPDX-License-Identifier: Apache-2.0
#include "app/runtime.hpp"

#include <unistd.h>

#include <charconv>
#include <cstring>
#include <filesystem>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <set>

#include "app/decoder_streams.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "plugin/descriptor.hpp"
#include "plugin/dispatch.hpp"

namespace mp::host {

namespace {

std::string hostName() {
    char buf[256] = {0};
    if (gethostname(buf, sizeof buf - 1) != 0) {
        return "localhost";
    }
    return buf;
}

// The settings a plugin receives: keys of the original probe apply only where the plugin has
// a property of that name; everything else is checked against the property table.
std::map<std::string, Setting> settingsFor(const SlotConfig& slot, const mp_plugin& desc) {
    std::map<std::string, Setting> settings;
    for (const auto& [key, s] : slot.settings) {
        bool legacy = s.keyPath.rfind("legacy:", 0) == 0;
        Setting copy = s;
        if (legacy) {
            copy.keyPath = s.keyPath.substr(7);
            bool known = false;
            for (size_t i = 0; desc.properties != nullptr && desc.properties[i].name; ++i) {
                known = known || key == desc.properties[i].name;
            }
            if (!known) {
                continue;
            }
        }
        settings[key] = copy;
    }
    return settings;
}

}  // namespace

Runtime::Runtime(HostConfig config, RuntimeOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      registry_(hostApi()),
      reportsOut_(metrics_.get("host", "reports_total", "node reports produced", MP_COUNTER)),
      eventsDropped_(metrics_.get("host", "events_ignored_total",
                                  "events emitted where no stage takes them", MP_COUNTER)),
      collectsLate_(metrics_.get("host", "collects_late_total",
                                 "decoder workers that stayed busy past the collect wait (their "
                                 "interval went into the next report)",
                                 MP_COUNTER)) {
    intervalMs_ = static_cast<uint64_t>(config_.intervalS) * 1000;
    setLogLevel(parseLogLevel(config_.logLevel));
    startedNs_ = wallClockNs();
}

Runtime::~Runtime() { stop(); }

void Runtime::loadPlugins(bool includeDefaultDir) {
    if (includeDefaultDir) {
        registry_.loadDirectory(defaultPluginDir());
    }
    for (const auto& dir : config_.pluginDirs) {
        registry_.loadDirectory(dir);
    }
}

void Runtime::resolve() {
    const std::string& file = config_.file;
    for (auto& slot : config_.slots) {
        const LoadedPlugin* p = registry_.find(slot.plugin);
        std::string at = where(file, slot.node) + slot.keyPath;
        if (p == nullptr) {
            std::string known;
            for (const auto& lp : registry_.plugins()) {
                if (lp.desc.kind == slot.kind) {
                    known += (known.empty() ? "" : ", ") + std::string(lp.desc.name);
                }
            }
            throw ConfigError(at + ": no plugin named '" + slot.plugin + "' (" +
                              kindName(slot.kind) +
                              " plugins found: " + (known.empty() ? "none" : known) + ")");
        }
        if (p->desc.kind != slot.kind) {
            throw ConfigError(at + ": plugin '" + slot.plugin + "' is a " + kindName(p->desc.kind) +
                              " plugin and cannot fill the " + kindName(slot.kind) + " slot");
        }
        (void)validate(file, "plugin " + slot.plugin, slot.node, settingsFor(slot, p->desc),
                       p->desc.properties);
    }
}

mp_status Runtime::callHook(Instance& inst, const char* hook, mp_status st) {
    if (st != MP_OK) {
        std::string err =
            inst.host->error.empty() ? "status " + std::to_string(st) : inst.host->error;
        throw StartError(inst.host->slot + " (" + inst.plugin->path + "): " + hook +
                         " failed: " + err);
    }
    return st;
}

void Runtime::create() {
    nodeName_ = config_.nodeName.empty() ? hostName() + ":" + std::to_string(config_.serverPort)
                                         : config_.nodeName;
    workersText_ = std::to_string(config_.workers);
    const std::string& file = config_.file;
    // Where plugins keep their state: `statedir` (made if missing), else the configuration
    // file's folder, as the cluster plugins always did.
    if (!config_.stateDir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(config_.stateDir, ec);
        if (ec || !std::filesystem::is_directory(config_.stateDir)) {
            throw StartError("statedir " + config_.stateDir +
                             ": cannot make it a folder: " + ec.message());
        }
        stateDir_ = config_.stateDir;
    } else if (!file.empty() && file != "(command line)") {
        size_t slash = file.rfind('/');
        stateDir_ = slash == std::string::npos ? "." : file.substr(0, slash);
    }
    auth_ = std::make_shared<const Authenticator>(config_.auth);
    if (options_.serveHttp) {
        HttpOptions ho;
        ho.address = config_.serverAddress;
        ho.port = config_.serverPort;
        ho.auth = auth_;
        ho.maxConnections = static_cast<size_t>(config_.http.maxConnections);
        ho.maxConnectionsPerClient = static_cast<size_t>(config_.http.maxConnectionsPerClient);
        ho.reservedConnections = static_cast<size_t>(config_.http.reservedConnections);
        ho.headerTimeout = std::chrono::milliseconds(config_.http.headerTimeoutMs);
        ho.keepAliveTimeout = std::chrono::milliseconds(config_.http.keepaliveTimeoutMs);
        ho.maxBodyBytes = static_cast<size_t>(config_.http.maxBodyKb) * 1024;
        ho.maxBufferedBytes = static_cast<size_t>(config_.http.maxBufferedMb) << 20;
        ho.tlsCertFile = config_.tls.certFile;
        ho.tlsKeyFile = config_.tls.keyFile;
        try {
            http_ = std::make_unique<HttpServer>(ho, metrics_);
        } catch (const std::runtime_error& e) {
            throw StartError(e.what());  // unusable TLS files: --check says so too
        }
        addBuiltinRoutes();
    }
    timers_ = std::make_unique<TimerService>();
    bus_ = std::make_unique<RecordBus>(static_cast<size_t>(config_.records.maxBufferMb) << 20,
                                       metrics_);
    for (auto& slot : config_.slots) {
        const LoadedPlugin* p = registry_.find(slot.plugin);
        auto values = validate(file, "plugin " + slot.plugin, slot.node, settingsFor(slot, p->desc),
                               p->desc.properties);
        int copies = slot.kind == MP_KIND_DECODER ? config_.workers : 1;
        for (int i = 0; i < copies; ++i) {
            auto inst = std::make_unique<Instance>();
            inst->plugin = p;
            inst->slotName = slot.slot;
            inst->config.values = values;
            inst->host = std::make_unique<mp_host>();
            inst->host->rt = this;
            inst->host->instance = inst.get();
            inst->host->name = p->desc.name;
            inst->host->slot = copies > 1 ? slot.slot + "[" + std::to_string(i) + "]" : slot.slot;
            inst->host->kind = p->desc.kind;
            inst->host->index = i;
            inst->takesReports = slot.reports;
            // Every instance may emit records; sources wait for room by default, the others
            // (live capture, decoders) never block (host_set "records.backpressure").
            Instance* raw = inst.get();
            inst->producer = bus_->addProducer(RecordBus::ProducerPort{
                inst->host->slot,
                slot.kind == MP_KIND_SOURCE ? RecordBus::Policy::Wait : RecordBus::Policy::Drop,
                [raw](uint64_t seq) { dispatch::delivered(*raw, seq); }});
            if (!slot.records.empty()) {  // (config: sinks and the cluster only)
                if (p->desc.on_record == nullptr) {
                    throw StartError(where(file, slot.node) + slot.keyPath + ": " + slot.plugin +
                                     " takes no records (it has no on_record hook): remove "
                                     "`records:` or choose a plugin that takes them");
                }
                std::string patterns;
                for (const auto& r : slot.records) {
                    patterns += (patterns.empty() ? "" : ", ") + r;
                }
                bus_->addSink(RecordBus::SinkPort{inst->host->slot + " (" + slot.plugin + ")",
                                                  slot.records,
                                                  [raw](const mp_record& rec, uint64_t token) {
                                                      return dispatch::record(*raw, rec, token);
                                                  }});
            }
            mp_status st = dispatch::create(*inst, hostApi());
            if (st != MP_OK) {
                throw StartError(inst->host->slot + " (" + p->path + "): create failed: " +
                                 (inst->host->error.empty() ? "status " + std::to_string(st)
                                                            : inst->host->error));
            }
            instances_.push_back(std::move(inst));
        }
    }
}

void Runtime::createPipeline() {
    // What the captures told the host in create() (host_set): their server ports and threads.
    std::set<uint16_t> ports;
    size_t captures = 0;
    size_t threads = 0;  // 0: some capture did not say
    bool unknownThreads = false;
    for (const auto& inst : instances_) {
        if (inst->host->kind != MP_KIND_CAPTURE) {
            continue;
        }
        ++captures;
        ports.insert(inst->serverPorts.begin(), inst->serverPorts.end());
        unknownThreads = unknownThreads || inst->captureThreads == 0;
        threads += inst->captureThreads;
    }
    if (captures == 0) {
        return;
    }
    PipelineOptions po;
    po.workers = static_cast<size_t>(config_.workers);
    po.ringBytes = static_cast<size_t>(config_.stream.ringKb) * 1024;
    po.limits.maxConnections = static_cast<size_t>(config_.stream.maxConnections);
    po.limits.maxBufferedPerDirection = static_cast<size_t>(config_.stream.maxBufferKb) * 1024;
    po.limits.maxBufferedPerWorker =
        static_cast<size_t>(config_.stream.maxWorkerBufferMb) * 1024 * 1024;
    po.limits.idleTimeoutNs = static_cast<uint64_t>(config_.stream.idleTimeoutS) * 1000000000ULL;
    // The server side of a connection: every capture's ports (3306 when none gives any).
    po.serverPorts.assign(ports.begin(), ports.end());
    if (po.serverPorts.empty()) {
        po.serverPorts.push_back(3306);
    }
    // One capture thread in all and one worker: that thread does the worker's work itself (no
    // ring copy, no hand-off); the kernel's capture buffer is the queue.
    po.inlineWorker = !unknownThreads && threads == 1 && po.workers == 1;
    inlineText_ = po.inlineWorker ? "true" : "false";
    // Worker i feeds its streams to copy i of every decoder slot (`decoder`, then `decoders`).
    std::vector<std::vector<Instance*>> decoders = decoderGroups(false);
    for (size_t w = 0; w < po.workers; ++w) {
        std::vector<std::unique_ptr<DecoderStreams>> mine;
        for (auto& group : decoders) {
            if (w < group.size()) {
                mine.push_back(std::make_unique<DecoderStreams>(*group[w]));
            }
        }
        if (mine.empty()) {
            handlers_.push_back(std::make_unique<NullStreams>());
        } else if (mine.size() == 1) {
            handlers_.push_back(std::move(mine[0]));  // the usual case: no fan-out
        } else {
            handlers_.push_back(std::make_unique<FanoutStreams>(std::move(mine)));
        }
    }
    std::vector<StreamHandler*> handlers;
    for (auto& h : handlers_) {
        handlers.push_back(h.get());
    }
    pipeline_ = std::make_unique<Pipeline>(po, handlers, &metrics_);
}

std::vector<std::vector<Instance*>> Runtime::decoderGroups(bool runningOnly) const {
    std::vector<std::vector<Instance*>> groups;
    std::map<std::string, size_t> index;
    for (const auto& inst : instances_) {
        if (inst->host->kind != MP_KIND_DECODER || (runningOnly && !inst->host->running)) {
            continue;
        }
        auto [it, fresh] = index.emplace(inst->slotName, groups.size());
        if (fresh) {
            groups.emplace_back();
        }
        groups[it->second].push_back(inst.get());
    }
    return groups;
}

void Runtime::start() {
    createPipeline();
    if (http_) {
        try {
            http_->start();
        } catch (const std::exception& e) {
            throw StartError(e.what());
        }
        serverPortText_ = std::to_string(http_->port());
        log(MP_LOG_INFO, "host",
            "serving HTTP on " + config_.serverAddress + ":" + serverPortText_);
        log(auth_->protectedMode() ? MP_LOG_WARN : MP_LOG_INFO, "host",
            auth_->summary(config_.serverAddress + ":" + serverPortText_));
    } else {
        serverPortText_ = "0";
    }
    // Downstream first, so nothing is emitted into a stage that is not running yet.
    if (bus_) {
        bus_->start();
    }
    for (uint32_t kind :
         {MP_KIND_SINK, MP_KIND_CLUSTER, MP_KIND_DECODER, MP_KIND_CAPTURE, MP_KIND_SOURCE}) {
        if (kind == MP_KIND_CAPTURE && pipeline_) {
            pipeline_->start();  // workers run before frames arrive
        }
        for (auto& inst : instances_) {
            if (inst->host->kind != kind) {
                continue;
            }
            inst->host->running = true;
            inst->host->error.clear();
            mp_status st = dispatch::start(*inst);
            if (st != MP_OK) {
                inst->host->running = false;
                callHook(*inst, "start", st);
            }
            inst->host->serving = true;
            inst->started = true;
            startOrder_.push_back(inst.get());
            log(MP_LOG_DEBUG, "host", "started " + inst->host->slot + " " + inst->host->name);
        }
    }
    {
        std::lock_guard<std::mutex> lock(reportMutex_);
        intervalStartNs_ = wallClockNs();
    }
    {
        // /config/update may already be changing the interval (the server runs): one lock for
        // the interval and the timer that follows it.
        std::lock_guard<std::mutex> lock(intervalMutex_);
        auto period = std::chrono::milliseconds(intervalMs_.load());
        reportTimer_ = timers_->start(period, period, [this] { flushReport(false); });
    }
    if (pipeline_) {
        // A capture that went quiet right after a full batch left it queued for a sleeping
        // worker (see Pipeline::wakeStalled): at most this long.
        wakeTimer_ = timers_->start(kWakeStalledEvery, kWakeStalledEvery,
                                    [this] { pipeline_->wakeStalled(); });
    }
}

void Runtime::stop() {
    for (mp_timer** t : {&reportTimer_, &wakeTimer_}) {
        std::lock_guard<std::mutex> lock(intervalMutex_);
        if (*t != nullptr && timers_) {
            timers_->stop(*t);
            *t = nullptr;
        }
    }
    // Order: sources and captures stop; the stream layer drains; the last interval's report goes
    // out (to websocket clients too); the server stops, so no handler or websocket callback runs
    // during the stop() of a decoder, cluster or sink; then those stop, downstream last. Before
    // the last report, the records held are given time to be delivered (records.drain_ms) and
    // the record threads end; the delivered marks still go to the producers until they are
    // destroyed. A producer stopping no longer waits for room in the record buffer.
    bool finalFlushed = startOrder_.empty();
    for (auto it = startOrder_.rbegin(); it != startOrder_.rend(); ++it) {
        Instance* inst = *it;
        if (inst->host->kind != MP_KIND_CAPTURE && inst->host->kind != MP_KIND_SOURCE &&
            !finalFlushed) {
            // Captures are stopped: drain and close every stream (decoders emit their last
            // records), deliver the records held, then the last interval's report reaches the
            // cluster and the sinks while they still run (a cluster that takes records has all
            // of them before its last report).
            if (pipeline_) {
                pipeline_->stop();
            }
            if (bus_) {
                bus_->stopDelivery(std::chrono::milliseconds(config_.records.drainMs));
            }
            flushReport(true);
            finalFlushed = true;
            if (http_) {
                http_->stop();
            }
        }
        if (bus_ && inst->producer != nullptr) {
            bus_->closeProducer(inst->producer);  // a source blocked in emit_record can stop
        }
        inst->host->serving = false;
        dispatch::stop(*inst);
        inst->host->running = false;
        inst->started = false;
        log(MP_LOG_DEBUG, "host", "stopped " + inst->host->slot + " " + inst->host->name);
    }
    startOrder_.clear();
    if (bus_) {
        bus_->stopDelivery(std::chrono::milliseconds(0));
        bus_->finish();  // the last delivered marks, before any producer is destroyed
    }
    if (pipeline_) {
        pipeline_->stop();
    }
    if (http_) {
        http_->stop();
    }
    for (auto it = instances_.rbegin(); it != instances_.rend(); ++it) {
        dispatch::destroy(**it);
    }
    instances_.clear();
    bus_.reset();
    timers_.reset();
}

void Runtime::requestShutdown(int code, const std::string& reason) {
    {
        std::lock_guard<std::mutex> lock(shutdownMutex_);
        if (shutdownRequested_) {
            return;
        }
        shutdownRequested_ = true;
        exitCode_ = code;
    }
    log(code == 0 ? MP_LOG_INFO : MP_LOG_ERROR, "host", "stopping: " + reason);
    shutdownCv_.notify_all();
}

int Runtime::waitForShutdown() {
    std::unique_lock<std::mutex> lock(shutdownMutex_);
    shutdownCv_.wait(lock, [&] { return shutdownRequested_; });
    return exitCode_;
}

void Runtime::logFrom(mp_host* h, int level, std::string_view msg) { log(level, h->name, msg); }

mp_status Runtime::emitFrom(mp_host* h, const mp_event& ev) {
    if (!h->running.load()) {
        return MP_ECLOSED;
    }
    switch (ev.type) {
        case MP_EVENT_INPUT_END:
            if (h->kind == MP_KIND_CAPTURE) {
                log(MP_LOG_INFO, "host", h->name + ": end of input");
                if (pipeline_) {
                    pipeline_->endOfInput();  // every connection closed, decoders ticked
                }
                if (options_.printFinalReport) {
                    flushReport(true);
                    requestShutdown(0, "input finished");
                }
                return MP_OK;
            }
            if (h->kind == MP_KIND_SOURCE) {
                // A source with finite input (files read from disk): when no capture runs and
                // every source has ended, the job is done (records drain at stop).
                log(MP_LOG_INFO, "host", h->name + ": end of input");
                size_t sources = 0;
                bool capture = false;
                for (const auto& inst : instances_) {
                    sources += inst->host->kind == MP_KIND_SOURCE ? 1 : 0;
                    capture = capture || inst->host->kind == MP_KIND_CAPTURE;
                }
                if (!h->inputEnded.exchange(true) && sourcesEnded_.fetch_add(1) + 1 == sources &&
                    !capture) {
                    requestShutdown(0, "input finished");
                }
                return MP_OK;
            }
            break;
        case MP_EVENT_REPORT:
            if (h->kind == MP_KIND_CLUSTER) {
                toSinks(ev);
                return MP_OK;
            }
            break;
        case MP_EVENT_PARTIAL:
            if (h->kind == MP_KIND_DECODER) {
                std::lock_guard<std::mutex> lock(sectionMutex_);
                section_.assign(reinterpret_cast<const char*>(ev.payload.data), ev.payload.len);
                return MP_OK;
            }
            break;
        default:
            break;
    }
    // Not this kind's to emit: counted; a 1.5 plugin is told (MP_EPERM) and it is logged once
    // per instance, an older one gets MP_OK as it always did.
    eventsDropped_->value.fetch_add(1, std::memory_order_relaxed);
    if (h->instance->plugin->desc.abi_minor < 5) {
        return MP_OK;
    }
    if (!h->instance->emitRefused.exchange(true)) {
        log(MP_LOG_WARN, "host",
            h->slot + " (" + h->name + ") emitted an event of type " + std::to_string(ev.type) +
                " that its kind may not emit: refused (MP_EPERM, counted in "
                "events_ignored_total; reports come from the cluster slot only, other data "
                "goes as records)");
    }
    return MP_EPERM;
}

mp_status Runtime::recordFrom(mp_host* h, const mp_record& rec) {
    if (!h->running.load() || !bus_ || h->instance->producer == nullptr) {
        return MP_ECLOSED;
    }
    return bus_->emit(h->instance->producer, rec);
}

mp_status Runtime::recordsFrom(mp_host* h, const mp_record* const* recs, size_t n, size_t& taken) {
    taken = 0;
    if (!h->running.load() || !bus_ || h->instance->producer == nullptr) {
        return MP_ECLOSED;
    }
    return bus_->emit(h->instance->producer, recs, n, taken);
}

void Runtime::recordDone(uint64_t token, mp_status status) {
    if (bus_) {
        bus_->done(token, status);
    }
}

mp_status Runtime::framesFrom(mp_host* h, const mp_frame* frames, size_t count) {
    if (!h->running.load() || h->kind != MP_KIND_CAPTURE || !pipeline_) {
        return MP_ECLOSED;
    }
    return pipeline_->onFrames(frames, count);
}

mp_status Runtime::hostGet(mp_host* h, const char* key, mp_str* out) {
    std::string_view k = key;
    auto give = [&](const std::string& s) {
        *out = mp_str{s.c_str(), s.size()};
        return MP_OK;
    };
    static const std::string version = MP_HOST_VERSION;
    if (k == "node.name") {
        return give(nodeName_);
    }
    if (k == "server.address") {
        return give(config_.serverAddress);
    }
    if (k == "server.port") {
        return give(serverPortText_);
    }
    if (k == "host.version") {
        return give(version);
    }
    if (k == "probe.workers") {
        return give(workersText_);
    }
    if (k == "config.file") {
        return give(config_.file);
    }
    if (k == "state.dir") {
        if (stateDir_.empty()) {
            return MP_ENOENT;  // an offline run without a configuration file keeps no state
        }
        return give(stateDir_);
    }
    if (k == "instance.index") {
        thread_local std::string idx;
        idx = std::to_string(h->index);
        return give(idx);
    }
    if (k == "auth.mode") {
        static const std::string tokens = "tokens";
        static const std::string prot = "protected";
        return give(auth_ && !auth_->protectedMode() ? tokens : prot);
    }
    if (k == "tls.ca_file") {
        if (config_.tls.caFile.empty()) {
            return MP_ENOENT;
        }
        return give(config_.tls.caFile);
    }
    if (k == "auth.peer_authorization") {
        if (!auth_ || auth_->peerAuthorization().empty()) {
            return MP_ENOENT;
        }
        return give(auth_->peerAuthorization());
    }
    if (k == "interval.ms") {
        thread_local std::string ms;
        ms = std::to_string(intervalMs_.load());
        return give(ms);
    }
    if (k == "cluster.role" || k == "cluster.master") {
        std::lock_guard<std::mutex> lock(roleMutex_);
        thread_local std::string value;
        value = k == "cluster.role" ? clusterRole_ : clusterMaster_;
        return give(value);
    }
    if (k == "stream.inline") {
        if (inlineText_.empty()) {
            return MP_ENOENT;  // decided at start, before any capture starts
        }
        return give(inlineText_);
    }
    return MP_ENOENT;
}

mp_status Runtime::hostSet(mp_host* h, const char* key, std::string_view value) {
    std::string_view k = key;
    Instance& inst = *h->instance;
    if (k == "cluster.role" || k == "cluster.master") {
        if (h->kind != MP_KIND_CLUSTER) {
            log(MP_LOG_ERROR, h->name, std::string(key) + " is for the cluster plugin");
            return MP_EINVAL;
        }
        if (k == "cluster.role" && value != "master" && value != "slave" && value != "standalone") {
            return MP_EINVAL;
        }
        bool changed = false;
        {
            std::lock_guard<std::mutex> lock(roleMutex_);
            std::string& target = k == "cluster.role" ? clusterRole_ : clusterMaster_;
            changed = k == "cluster.role" && target != value;
            target.assign(value.substr(0, 256));
        }
        if (changed) {
            log(MP_LOG_INFO, "host", "cluster role: " + std::string(value));
            // Every other running plugin built for 1.4 or later hears it (on_event, serialized
            // per instance as usual); an older one might take any event for a report.
            mp_event ev{};
            ev.struct_size = sizeof ev;
            ev.type = MP_EVENT_ROLE;
            ev.ts_ns = wallClockNs();
            ev.content_type = mp_str{"text/plain", 10};
            ev.payload = mp_bytes{reinterpret_cast<const uint8_t*>(value.data()), value.size()};
            for (auto& other : instances_) {
                if (other.get() != &inst && other->host->kind != MP_KIND_CLUSTER &&
                    other->desc().abi_minor >= 4 && other->host->running.load()) {
                    dispatch::event(*other, ev);
                }
            }
        }
        return MP_OK;
    }
    if (k == "records.backpressure") {
        if ((value != "drop" && value != "wait") || inst.producer == nullptr || inst.started) {
            return MP_EINVAL;  // create() only, "drop" or "wait"
        }
        RecordBus::setPolicy(inst.producer,
                             value == "wait" ? RecordBus::Policy::Wait : RecordBus::Policy::Drop);
        return MP_OK;
    }
    if (k == "capture.server_ports" || k == "capture.threads") {
        if (h->kind != MP_KIND_CAPTURE) {
            log(MP_LOG_ERROR, h->name, std::string(key) + " is for capture plugins");
            return MP_EINVAL;
        }
        if (pipeline_) {
            return MP_EINVAL;  // create() only: the stream layer is planned at start
        }
    }
    auto number = [](std::string_view text, uint64_t max, uint64_t& out) {
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
        return ec == std::errc() && end == text.data() + text.size() && !text.empty() && out >= 1 &&
               out <= max;
    };
    if (k == "capture.server_ports") {
        std::vector<uint16_t> ports;
        for (const std::string& item : splitList(std::string(value))) {
            uint64_t n = 0;
            if (!number(item, 65535, n)) {
                h->error = "capture.server_ports: not a TCP port: '" + mp::printable(item) + "'";
                return MP_EINVAL;
            }
            ports.push_back(static_cast<uint16_t>(n));
        }
        inst.serverPorts = std::move(ports);
        return MP_OK;
    }
    if (k == "capture.threads") {
        uint64_t n = 0;
        if (!number(value, 1024, n)) {
            h->error = "capture.threads: expected 1 to 1024";
            return MP_EINVAL;
        }
        inst.captureThreads = static_cast<size_t>(n);
        return MP_OK;
    }
    return MP_ENOENT;
}

mp_counter* Runtime::counter(mp_host* h, const char* name, const char* help, uint32_t kind) {
    return metrics_.get(h->name, name, help, kind);
}

mp_timer* Runtime::timerStart(mp_host* h, uint64_t delay, uint64_t period, void (*fn)(void*),
                              void* user) {
    if (!timers_) {
        return nullptr;
    }
    Instance* inst = h->instance;
    return timers_->start(std::chrono::nanoseconds(delay), std::chrono::nanoseconds(period),
                          [inst, fn, user] { dispatch::timer(*inst, fn, user); });
}

mp_status Runtime::httpRoute(mp_host* h, const char* path, const mp_route& route) {
    if (!http_) {
        return MP_OK;  // offline run without a server: routes are accepted and never called
    }
    Instance* inst = h->instance;
    RouteSpec spec;
    spec.role = route.role;
    spec.methods = route.methods;
    spec.ready = &h->serving;
    spec.fn = [fn = route.handler, user = route.user, inst](const mp_http_request& req,
                                                            mp_http_response& resp) {
        if (!dispatch::http(*inst, fn, user, req, &resp)) {
            resp.status = 500;
            resp.contentType = "application/json";
            resp.body = "{\"error\":\"internal error\"}";
        }
    };
    bool ok = http_->addRoute(path, std::move(spec));
    if (!ok) {
        h->error = "path already taken";
        log(MP_LOG_ERROR, h->name, std::string("HTTP path already taken: ") + path);
        return MP_EINVAL;
    }
    return MP_OK;
}

mp_status Runtime::wsEndpoint(mp_host* h, const char* path, const mp_ws_handler* handler) {
    if (!http_) {
        return MP_OK;
    }
    mp_ws_handler copy{};  // fields past a 1.0/1.1 plugin's struct read as 0: role admin
    std::memcpy(&copy, handler, std::min<size_t>(handler->struct_size, sizeof copy));
    if (copy.role > MP_ROLE_ADMIN) {
        log(MP_LOG_ERROR, h->name, std::string("websocket endpoint with an unknown role: ") + path);
        return MP_EINVAL;
    }
    if (!http_->addWebSocket(path, dispatch::websocket(*h->instance, copy), &h->serving)) {
        log(MP_LOG_ERROR, h->name, std::string("HTTP path already taken: ") + path);
        return MP_EINVAL;
    }
    return MP_OK;
}

void Runtime::setIntervalMs(uint64_t ms) {
    std::lock_guard<std::mutex> lock(intervalMutex_);
    intervalMs_ = ms;
    if (reportTimer_ != nullptr && timers_) {
        timers_->reschedule(reportTimer_, std::chrono::milliseconds(ms));
    }
}

}  // namespace mp::host
