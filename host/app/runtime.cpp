// SPDX-License-Identifier: Apache-2.0
#include "app/runtime.hpp"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <mp/sdk.hpp>
#include <sstream>
#include <thread>

#include "core/log.hpp"
#include "plugin/descriptor.hpp"

namespace mp::host {

// Implemented in server/http_server.cpp.
mp_status wsSend(mp_ws_conn* conn, uint32_t opcode, mp_bytes data);
void wsClose(mp_ws_conn* conn, uint16_t code, mp_str reason);
mp_status queryParam(const mp_http_request* req, const char* name, mp_str* out);
mp_status headerValue(const mp_http_request* req, const char* name, mp_str* out);

namespace {

uint64_t wallNs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

std::string_view sv(mp_str s) {
    return s.data != nullptr ? std::string_view(s.data, s.len) : std::string_view();
}

// ---- the C services table -------------------------------------------------------------------

void apiLog(mp_host* h, int level, mp_str msg) {
    if (h != nullptr && h->rt != nullptr) {
        h->rt->logFrom(h, level, sv(msg));
    }
}

void apiSetError(mp_host* h, mp_status /*code*/, mp_str msg) {
    if (h != nullptr) {
        h->error.assign(sv(msg).substr(0, 4096));
    }
}

const Value* lookup(const mp_config* cfg, const char* key, uint32_t type, mp_status& st) {
    if (cfg == nullptr || key == nullptr) {
        st = MP_EINVAL;
        return nullptr;
    }
    auto it = cfg->values.find(key);
    if (it == cfg->values.end()) {
        st = MP_ENOENT;
        return nullptr;
    }
    if (it->second.type != type) {
        st = MP_EINVAL;
        return nullptr;
    }
    st = MP_OK;
    return &it->second;
}

mp_status apiGetStr(const mp_config* cfg, const char* key, mp_str* out) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, MP_PROP_STRING, st);
    if (v != nullptr && out != nullptr) {
        *out = mp_str{v->s.c_str(), v->s.size()};
    }
    return st;
}

mp_status apiGetI64(const mp_config* cfg, const char* key, int64_t* out) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, MP_PROP_INT, st);
    if (v != nullptr && out != nullptr) {
        *out = v->i;
    }
    return st;
}

mp_status apiGetF64(const mp_config* cfg, const char* key, double* out) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, MP_PROP_DOUBLE, st);
    if (v != nullptr && out != nullptr) {
        *out = v->d;
    }
    return st;
}

mp_status apiGetBool(const mp_config* cfg, const char* key, int* out) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, MP_PROP_BOOL, st);
    if (v != nullptr && out != nullptr) {
        *out = v->b ? 1 : 0;
    }
    return st;
}

mp_status apiListSize(const mp_config* cfg, const char* key, size_t* out) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, MP_PROP_STRING_LIST, st);
    if (v != nullptr && out != nullptr) {
        *out = v->list.size();
    }
    return st;
}

mp_status apiListItem(const mp_config* cfg, const char* key, size_t index, mp_str* out) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, MP_PROP_STRING_LIST, st);
    if (v == nullptr) {
        return st;
    }
    if (index >= v->list.size()) {
        return MP_ENOENT;
    }
    if (out != nullptr) {
        *out = mp_str{v->list[index].c_str(), v->list[index].size()};
    }
    return MP_OK;
}

mp_status apiHostGet(mp_host* h, const char* key, mp_str* out) {
    if (h == nullptr || h->rt == nullptr || key == nullptr || out == nullptr) {
        return MP_EINVAL;
    }
    return h->rt->hostGet(h, key, out);
}

mp_status apiEmit(mp_host* h, const mp_event* ev) {
    if (h == nullptr || h->rt == nullptr || ev == nullptr || ev->struct_size < 16) {
        return MP_EINVAL;
    }
    // Copy what the caller's struct has; a 1.0 plugin's event may be shorter than ours.
    mp_event e{};
    std::memcpy(&e, ev, std::min<size_t>(ev->struct_size, sizeof e));
    return h->rt->emitFrom(h, e);
}

mp_status apiEmitFrames(mp_host* h, const mp_frame* frames, size_t count) {
    if (h == nullptr || h->rt == nullptr || (frames == nullptr && count != 0)) {
        return MP_EINVAL;
    }
    return h->rt->framesFrom(h, frames, count);
}

uint64_t apiNow(mp_host* /*h*/) { return wallNs(); }

mp_counter* apiCounter(mp_host* h, const char* name, const char* help, uint32_t kind) {
    if (h == nullptr || h->rt == nullptr || name == nullptr || name[0] == '\0') {
        return nullptr;
    }
    return h->rt->counter(h, name, help != nullptr ? help : "", kind);
}

void apiCounterAdd(mp_counter* c, uint64_t delta) {
    if (c != nullptr) {
        c->value.fetch_add(static_cast<int64_t>(delta), std::memory_order_relaxed);
    }
}

void apiCounterSet(mp_counter* c, int64_t value) {
    if (c != nullptr) {
        c->value.store(value, std::memory_order_relaxed);
    }
}

mp_timer* apiTimerStart(mp_host* h, uint64_t delay, uint64_t period, void (*fn)(void*),
                        void* user) {
    if (h == nullptr || h->rt == nullptr || fn == nullptr) {
        return nullptr;
    }
    return h->rt->timerStart(h, delay, period, fn, user);
}

// Timers belong to one runtime per process; the handle is enough to find it.
Runtime* gRuntime = nullptr;

void apiTimerStop(mp_timer* t) {
    if (t != nullptr && gRuntime != nullptr) {
        gRuntime->timerStop(t);
    }
}

mp_status apiHttpRoute(mp_host* h, const char* path, mp_http_handler fn, void* user) {
    if (h == nullptr || h->rt == nullptr || path == nullptr || path[0] != '/' || fn == nullptr) {
        return MP_EINVAL;
    }
    // A 1.0/1.1 route says nothing of who may call it: admins only, any method.
    mp_route r{};
    r.struct_size = sizeof r;
    r.role = MP_ROLE_ADMIN;
    r.methods = MP_HTTP_GET | MP_HTTP_POST | MP_HTTP_PUT | MP_HTTP_DELETE;
    r.handler = fn;
    r.user = user;
    return h->rt->httpRoute(h, path, r);
}

mp_status apiHttpRouteEx(mp_host* h, const char* path, const mp_route* route) {
    if (h == nullptr || h->rt == nullptr || path == nullptr || path[0] != '/' || route == nullptr ||
        route->struct_size < offsetof(mp_route, user) + sizeof(void*) ||
        route->handler == nullptr || route->role > MP_ROLE_ADMIN ||
        (route->methods & ~(MP_HTTP_GET | MP_HTTP_POST | MP_HTTP_PUT | MP_HTTP_DELETE)) != 0) {
        return MP_EINVAL;
    }
    mp_route r = *route;
    r.role = r.role == MP_ROLE_DEFAULT ? MP_ROLE_ADMIN : r.role;
    r.methods = r.methods == 0 ? MP_HTTP_GET : r.methods;
    return h->rt->httpRoute(h, path, r);
}

void apiHttpReply(mp_http_response* resp, int status, mp_str contentType, mp_str body) {
    if (resp == nullptr || status < 100 || status > 599) {
        return;
    }
    resp->status = status;
    resp->contentType.assign(sv(contentType));
    resp->body.assign(sv(body));
}

mp_status apiWsEndpoint(mp_host* h, const char* path, const mp_ws_handler* handler) {
    if (h == nullptr || h->rt == nullptr || path == nullptr || path[0] != '/' ||
        handler == nullptr ||
        handler->struct_size < offsetof(mp_ws_handler, on_close) + sizeof(handler->on_close)) {
        return MP_EINVAL;
    }
    return h->rt->wsEndpoint(h, path, handler);
}

void apiShutdown(mp_host* h, int code, mp_str reason) {
    if (h != nullptr && h->rt != nullptr) {
        h->rt->requestShutdown(code, h->name + ": " + std::string(sv(reason)));
    }
}

const mp_host_api kApi = {
    sizeof(mp_host_api),
    MP_ABI_MAJOR,
    MP_ABI_MINOR,
    apiLog,
    apiSetError,
    apiGetStr,
    apiGetI64,
    apiGetF64,
    apiGetBool,
    apiListSize,
    apiListItem,
    apiHostGet,
    apiEmit,
    apiEmitFrames,
    apiNow,
    apiCounter,
    apiCounterAdd,
    apiCounterSet,
    apiTimerStart,
    apiTimerStop,
    apiHttpRoute,
    apiHttpReply,
    queryParam,
    apiWsEndpoint,
    wsSend,
    wsClose,
    apiShutdown,
    apiHttpRouteEx,
    headerValue,
};

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

const mp_host_api* hostApi() { return &kApi; }

Runtime::Runtime(HostConfig config, RuntimeOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      registry_(&kApi),
      reportsOut_(metrics_.get("host", "reports_total", "node reports produced", MP_COUNTER)),
      eventsDropped_(metrics_.get("host", "events_ignored_total",
                                  "events emitted where no stage takes them", MP_COUNTER)) {
    gRuntime = this;
    intervalMs_ = static_cast<uint64_t>(config_.intervalS) * 1000;
    setLogLevel(parseLogLevel(config_.logLevel));
    startedNs_ = wallNs();
}

Runtime::~Runtime() {
    stop();
    if (gRuntime == this) {
        gRuntime = nullptr;
    }
}

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
    for (auto& slot : config_.slots) {
        const LoadedPlugin* p = registry_.find(slot.plugin);
        auto values = validate(file, "plugin " + slot.plugin, slot.node, settingsFor(slot, p->desc),
                               p->desc.properties);
        int copies = slot.kind == MP_KIND_DECODER ? config_.workers : 1;
        for (int i = 0; i < copies; ++i) {
            auto inst = std::make_unique<Instance>();
            inst->plugin = p;
            inst->config.values = values;
            inst->host = std::make_unique<mp_host>();
            inst->host->rt = this;
            inst->host->name = p->desc.name;
            inst->host->slot = copies > 1 ? slot.slot + "[" + std::to_string(i) + "]" : slot.slot;
            inst->host->kind = p->desc.kind;
            inst->host->index = i;
            mp_status st = MP_ERROR;
            try {
                st = p->desc.create(inst->host.get(), &kApi, &inst->config, &inst->self);
            } catch (const std::exception& e) {
                inst->host->error = std::string("exception escaped the plugin: ") + e.what();
            } catch (...) {
                inst->host->error = "an exception escaped the plugin";
            }
            if (st == MP_OK && inst->self == nullptr) {
                inst->host->error = "create() returned OK but no instance";
                st = MP_ERROR;
            }
            if (st != MP_OK) {
                throw StartError(inst->host->slot + " (" + p->path + "): create failed: " +
                                 (inst->host->error.empty() ? "status " + std::to_string(st)
                                                            : inst->host->error));
            }
            instances_.push_back(std::move(inst));
        }
    }
}

namespace {

// Feeds one worker's streams to its decoder instance.
class DecoderStreams : public StreamHandler {
  public:
    explicit DecoderStreams(Instance& inst)
        : d_(inst.plugin->desc), self_(inst.self), host_(*inst.host) {}

    void* open(const mp_flow& flow) override {
        void* s = nullptr;
        mp_status st = MP_ERROR;
        try {
            st = d_.stream_open(self_, &flow, &s);
        } catch (...) {
            st = MP_ERROR;
        }
        return st == MP_OK ? s : &refused_;
    }
    void data(void* s, uint32_t dir, const uint8_t* p, size_t n, uint64_t ts) override {
        if (s != &refused_) {
            guard([&] { d_.stream_data(self_, s, dir, mp_bytes{p, n}, ts); });
        }
    }
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t ts) override {
        if (s != &refused_) {
            guard([&] { d_.stream_gap(self_, s, dir, len, ts); });
        }
    }
    void close(void* s, uint32_t reason, uint64_t ts) override {
        if (s != &refused_) {
            guard([&] { d_.stream_close(self_, s, reason, ts); });
        }
    }
    void tick(uint64_t ts) override {
        if (d_.on_tick != nullptr) {
            guard([&] { d_.on_tick(self_, ts); });
        }
    }

  private:
    template <class F>
    void guard(F&& f) {
        try {
            f();
        } catch (...) {
            log(MP_LOG_ERROR, host_.name, "an exception escaped a stream hook");
        }
    }
    const mp_plugin& d_;
    void* self_;
    mp_host& host_;
    static inline char refused_ = 0;
};

// Without a decoder the streams are only counted by the flow table.
class NullStreams : public StreamHandler {
  public:
    void* open(const mp_flow&) override { return this; }
    void data(void*, uint32_t, const uint8_t*, size_t, uint64_t) override {}
    void gap(void*, uint32_t, uint64_t, uint64_t) override {}
    void close(void*, uint32_t, uint64_t) override {}
    void tick(uint64_t) override {}
};

}  // namespace

void Runtime::createPipeline() {
    for (const auto& inst : instances_) {
        if (inst->host->kind == MP_KIND_CAPTURE) {
            capture_ = inst.get();
        }
    }
    if (capture_ == nullptr) {
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
    // The server side of a connection is the capture's port list (3306 when it has none).
    po.serverPorts.clear();
    auto it = capture_->config.values.find("port");
    if (it != capture_->config.values.end() && it->second.type == MP_PROP_STRING_LIST) {
        for (const auto& p : it->second.list) {
            try {
                long n = std::stol(p);
                if (n > 0 && n < 65536) {
                    po.serverPorts.push_back(static_cast<uint16_t>(n));
                }
            } catch (const std::exception&) {
                // the capture plugin refuses bad ports itself
            }
        }
    }
    if (po.serverPorts.empty()) {
        po.serverPorts.push_back(3306);
    }
    // One capture thread (a file, or a single device) and one worker: that thread does the
    // worker's work itself (no ring copy, no hand-off); the kernel's capture buffer is the queue.
    auto file = capture_->config.values.find("file");
    auto devices = capture_->config.values.find("device");
    bool oneThread =
        (file != capture_->config.values.end() && file->second.type == MP_PROP_STRING &&
         !file->second.s.empty()) ||
        (devices != capture_->config.values.end() && devices->second.type == MP_PROP_STRING_LIST &&
         devices->second.list.size() == 1);
    po.inlineWorker = oneThread && po.workers == 1;
    std::vector<StreamHandler*> handlers;
    for (auto& inst : instances_) {
        if (inst->host->kind == MP_KIND_DECODER) {
            handlers_.push_back(std::make_unique<DecoderStreams>(*inst));
        }
    }
    while (handlers_.size() < po.workers) {
        handlers_.push_back(std::make_unique<NullStreams>());
    }
    for (auto& h : handlers_) {
        handlers.push_back(h.get());
    }
    pipeline_ = std::make_unique<Pipeline>(po, handlers, &metrics_);
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
    for (uint32_t kind : {MP_KIND_SINK, MP_KIND_CLUSTER, MP_KIND_DECODER, MP_KIND_CAPTURE}) {
        if (kind == MP_KIND_CAPTURE && pipeline_) {
            pipeline_->start();  // workers run before frames arrive
        }
        for (auto& inst : instances_) {
            if (inst->host->kind != kind) {
                continue;
            }
            inst->host->running = true;
            inst->host->error.clear();
            mp_status st = MP_OK;
            if (inst->plugin->desc.start != nullptr) {
                try {
                    st = inst->plugin->desc.start(inst->self);
                } catch (...) {
                    inst->host->error = "an exception escaped the plugin";
                    st = MP_ERROR;
                }
            }
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
        intervalStartNs_ = wallNs();
    }
    auto period = std::chrono::milliseconds(intervalMs_.load());
    reportTimer_ = timers_->start(period, period, [this] { flushReport(false); });
    if (pipeline_) {
        // A capture that went quiet right after a full batch left it queued for a sleeping
        // worker (see Pipeline::wakeStalled): at most this long.
        wakeTimer_ = timers_->start(kWakeStalledEvery, kWakeStalledEvery,
                                    [this] { pipeline_->wakeStalled(); });
    }
}

void Runtime::stop() {
    for (mp_timer** t : {&reportTimer_, &wakeTimer_}) {
        if (*t != nullptr && timers_) {
            timers_->stop(*t);
            *t = nullptr;
        }
    }
    // Order: captures stop; the stream layer drains; the last interval's report goes out (to
    // websocket clients too); the server stops, so no handler or websocket callback runs during
    // the stop() of a decoder, cluster or sink; then those stop, downstream last.
    bool finalFlushed = startOrder_.empty();
    for (auto it = startOrder_.rbegin(); it != startOrder_.rend(); ++it) {
        Instance* inst = *it;
        if (inst->host->kind != MP_KIND_CAPTURE && !finalFlushed) {
            // Captures are stopped: drain and close every stream, then the last interval's
            // report reaches the cluster and the sinks while they still run.
            if (pipeline_) {
                pipeline_->stop();
            }
            flushReport(true);
            finalFlushed = true;
            if (http_) {
                http_->stop();
            }
        }
        inst->host->serving = false;
        if (inst->plugin->desc.stop != nullptr) {
            try {
                inst->plugin->desc.stop(inst->self);
            } catch (...) {
                log(MP_LOG_ERROR, "host", inst->host->slot + ": an exception escaped stop()");
            }
        }
        inst->host->running = false;
        inst->started = false;
        log(MP_LOG_DEBUG, "host", "stopped " + inst->host->slot + " " + inst->host->name);
    }
    startOrder_.clear();
    if (pipeline_) {
        pipeline_->stop();
    }
    if (http_) {
        http_->stop();
    }
    for (auto it = instances_.rbegin(); it != instances_.rend(); ++it) {
        try {
            (*it)->plugin->desc.destroy((*it)->self);
        } catch (...) {
            log(MP_LOG_ERROR, "host", (*it)->host->slot + ": an exception escaped destroy()");
        }
    }
    instances_.clear();
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
            break;
        case MP_EVENT_REPORT:
            if (h->kind == MP_KIND_CLUSTER) {
                for (auto& inst : instances_) {
                    if (inst->host->kind == MP_KIND_SINK && inst->host->running &&
                        inst->plugin->desc.on_event != nullptr) {
                        inst->plugin->desc.on_event(inst->self, &ev);
                    }
                }
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
    eventsDropped_->value.fetch_add(1, std::memory_order_relaxed);
    return MP_OK;
}

std::string Runtime::collectSection(uint64_t seq, uint64_t ts) {
    // Worker 0 of the decoder gathers every worker's interval and answers with MP_EVENT_PARTIAL.
    std::lock_guard<std::mutex> collect(collectMutex_);
    {
        std::lock_guard<std::mutex> lock(sectionMutex_);
        section_.clear();
    }
    for (auto& inst : instances_) {
        if (inst->host->kind == MP_KIND_DECODER && inst->host->index == 0 && inst->host->running &&
            inst->plugin->desc.on_event != nullptr) {
            mp_event ev{};
            ev.struct_size = sizeof ev;
            ev.type = MP_EVENT_COLLECT;
            ev.ts_ns = ts;
            ev.seq = seq;
            try {
                inst->plugin->desc.on_event(inst->self, &ev);
            } catch (...) {
                log(MP_LOG_ERROR, inst->host->name, "an exception escaped on_event");
            }
            break;
        }
    }
    std::lock_guard<std::mutex> lock(sectionMutex_);
    // The members of the decoder's object join the report's top level.
    size_t open = section_.find('{');
    size_t close = section_.rfind('}');
    if (open == std::string::npos || close == std::string::npos || close <= open + 1) {
        return "";
    }
    return section_.substr(open + 1, close - open - 1);
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
    return MP_ENOENT;
}

mp_counter* Runtime::counter(mp_host* h, const char* name, const char* help, uint32_t kind) {
    return metrics_.get(h->name, name, help, kind);
}

mp_timer* Runtime::timerStart(mp_host* /*h*/, uint64_t delay, uint64_t period, void (*fn)(void*),
                              void* user) {
    if (!timers_) {
        return nullptr;
    }
    return timers_->start(std::chrono::nanoseconds(delay), std::chrono::nanoseconds(period),
                          [fn, user] { fn(user); });
}

void Runtime::timerStop(mp_timer* t) {
    if (timers_) {
        timers_->stop(t);
    }
}

mp_status Runtime::httpRoute(mp_host* h, const char* path, const mp_route& route) {
    if (!http_) {
        return MP_OK;  // offline run without a server: routes are accepted and never called
    }
    std::string owner = h->name;
    RouteSpec spec;
    spec.role = route.role;
    spec.methods = route.methods;
    spec.ready = &h->serving;
    spec.fn = [fn = route.handler, user = route.user, owner](const mp_http_request& req,
                                                             mp_http_response& resp) {
        try {
            fn(user, &req, &resp);
        } catch (...) {
            log(MP_LOG_ERROR, owner, "an exception escaped an HTTP handler");
            resp.status = 500;
            resp.contentType = "application/json";
            resp.body = "{\"error\":\"internal error\"}";
        }
    };
    bool ok = http_->addRoute(path, std::move(spec));
    if (!ok) {
        apiSetError(h, MP_EINVAL, mp_str{"path already taken", 18});
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
    if (!http_->addWebSocket(path, copy, &h->serving)) {
        log(MP_LOG_ERROR, h->name, std::string("HTTP path already taken: ") + path);
        return MP_EINVAL;
    }
    return MP_OK;
}

void Runtime::setIntervalMs(uint64_t ms) {
    intervalMs_ = ms;
    if (reportTimer_ != nullptr && timers_) {
        timers_->reschedule(reportTimer_, std::chrono::milliseconds(ms));
    }
}

void Runtime::flushReport(bool final) {
    std::string json;
    uint64_t seq = 0;
    uint64_t end = wallNs();
    {
        std::lock_guard<std::mutex> lock(reportMutex_);
        if (final && finalSent_) {
            return;
        }
    }
    std::string section = collectSection(reportSeq_ + 1, end);
    {
        std::lock_guard<std::mutex> lock(reportMutex_);
        if (final && finalSent_) {
            return;  // one final report per run (end of input, then shutdown)
        }
        finalSent_ = finalSent_ || final;
        seq = ++reportSeq_;
        std::ostringstream out;
        out << "{\"version\":1,\"node\":" << mp::jsonString(nodeName_)
            << ",\"started_ns\":" << startedNs_ << ",\"seq\":" << seq
            << ",\"final\":" << (final ? "true" : "false")
            << ",\"interval\":{\"start_ns\":" << intervalStartNs_ << ",\"end_ns\":" << end
            << "},\"capture\":" << captureJson() << (section.empty() ? "" : ",") << section
            << ",\"stats\":" << metrics_.json() << "}";
        json = out.str();
        intervalStartNs_ = end;
        lastReport_ = json;
    }
    reportsOut_->value.fetch_add(1, std::memory_order_relaxed);
    deliverReport(json, seq, end);
    if (final && options_.printFinalReport) {
        if (options_.reportFormat == "table") {
            std::cout << reportTable(json);
        } else {
            std::cout << json << std::endl;
        }
    }
}

void Runtime::deliverReport(const std::string& json, uint64_t seq, uint64_t ts) {
    mp_event ev{};
    ev.struct_size = sizeof ev;
    ev.type = MP_EVENT_REPORT;
    ev.ts_ns = ts;
    ev.seq = seq;
    ev.content_type = mp_str{"application/json", 16};
    ev.payload = mp_bytes{reinterpret_cast<const uint8_t*>(json.data()), json.size()};
    // A cluster plugin, when present, decides what reaches the sinks (it may merge or forward).
    bool cluster = false;
    for (auto& inst : instances_) {
        if (inst->host->kind == MP_KIND_CLUSTER && inst->host->running &&
            inst->plugin->desc.on_event != nullptr) {
            cluster = true;
            inst->plugin->desc.on_event(inst->self, &ev);
        }
    }
    if (cluster) {
        return;
    }
    for (auto& inst : instances_) {
        if (inst->host->kind == MP_KIND_SINK && inst->host->running &&
            inst->plugin->desc.on_event != nullptr) {
            inst->plugin->desc.on_event(inst->self, &ev);
        }
    }
}

std::string reportTable(const std::string& json, size_t top) {
    std::ostringstream out;
    try {
        Poco::JSON::Parser parser;
        auto r = parser.parse(json).extract<Poco::JSON::Object::Ptr>();
        auto c = r->getObject("capture");
        if (c) {
            out << "capture: " << c->getValue<int64_t>("packets") << " packets, "
                << c->getObject("connections")->getValue<int64_t>("opened") << " connections, "
                << c->getValue<int64_t>("stream_bytes") << " stream bytes, "
                << c->getValue<int64_t>("gap_bytes") << " bytes missing\n";
        }
        auto totals = r->getObject("totals");
        if (totals) {
            out << "commands:";
            auto cmds = totals->getObject("commands");
            for (const auto& [k, v] : *cmds) {
                out << ' ' << k << '=' << v.convert<std::string>();
            }
            out << "\nerrors: " << totals->getValue<int64_t>("errors")
                << ", rows returned: " << totals->getValue<int64_t>("rows_returned");
            // What is in no template, when anything is.
            for (const auto& [key, what] :
                 {std::pair<const char*, const char*>{"lost_responses", "responses lost"},
                  {"templates_evicted", "not aggregated (template table full)"},
                  {"unresolved_executes", "executes of unknown statements"}}) {
                int64_t v = totals->optValue<int64_t>(key, 0);
                if (v != 0) {
                    out << ", " << what << ": " << v;
                }
            }
            out << "\n\n";
        }
        auto templates = r->getArray("templates");
        if (!templates) {
            return out.str() + "(no decoder: no templates)\n";
        }
        out << std::right << std::setw(7) << "count" << std::setw(7) << "errors" << std::setw(11)
            << "total_ms" << std::setw(10) << "p50_us" << std::setw(10) << "p95_us" << std::setw(10)
            << "p99_us" << std::setw(11) << "max_us" << std::setw(9) << "rows"
            << "  fingerprint\n";
        for (size_t i = 0; i < templates->size() && i < top; ++i) {
            auto t = templates->getObject(static_cast<unsigned>(i));
            auto l = t->getObject("latency_us");
            std::string fp = t->getValue<std::string>("fingerprint");
            if (fp.size() > 90) {
                fp = fp.substr(0, 87) + "...";
            }
            out << std::setw(7) << t->getValue<int64_t>("count") << std::setw(7)
                << t->getValue<int64_t>("errors") << std::setw(11) << std::fixed
                << std::setprecision(1) << l->getValue<double>("sum") / 1000.0 << std::setw(10)
                << l->getValue<double>("p50") << std::setw(10) << l->getValue<double>("p95")
                << std::setw(10) << l->getValue<double>("p99") << std::setw(11)
                << l->getValue<double>("max") << std::setw(9)
                << t->getValue<int64_t>("rows_returned") << "  " << fp << "\n";
        }
        if (templates->size() > top) {
            out << "(" << templates->size() - top << " more templates: use --format json)\n";
        }
    } catch (const std::exception& e) {
        out << "(cannot render the report as a table: " << e.what() << ")\n";
    }
    return out.str();
}

std::string Runtime::captureJson() const {
    if (!pipeline_) {
        return "{}";
    }
    CaptureStats c = pipeline_->captureStats();
    FlowStats f = pipeline_->flowStats();
    auto gauge = [&](const char* name) -> int64_t {
        if (capture_ == nullptr) {
            return 0;
        }
        int64_t v = metrics_.value("mysqlprobe_" + metricName(capture_->host->name) + "_" + name);
        return v < 0 ? 0 : v;
    };
    std::ostringstream out;
    out << "{\"packets\":" << c.frames << ",\"bytes\":" << c.bytes << ",\"tcp_segments\":" << c.tcp
        << ",\"kernel_dropped\":" << gauge("kernel_dropped")
        << ",\"interface_dropped\":" << gauge("interface_dropped")
        << ",\"probe_dropped\":" << c.queueDropped
        << ",\"truncated_snaplen\":" << gauge("truncated_total")
        << ",\"truncated_headers\":" << c.truncatedHeaders << ",\"not_ip\":" << c.notIp
        << ",\"not_tcp\":" << c.notTcp << ",\"ip_fragments\":" << c.fragments
        << ",\"malformed\":" << c.malformed << ",\"unsupported_link\":" << c.unsupportedLink
        << ",\"not_server_port\":" << f.notServerPort << ",\"connections\":{\"opened\":" << f.opened
        << ",\"midstream\":" << f.midstream << ",\"closed_fin\":" << f.closed[MP_CLOSE_FIN]
        << ",\"closed_rst\":" << f.closed[MP_CLOSE_RST]
        << ",\"closed_idle\":" << f.closed[MP_CLOSE_IDLE]
        << ",\"evicted\":" << f.closed[MP_CLOSE_EVICTED]
        << ",\"closed_shutdown\":" << f.closed[MP_CLOSE_SHUTDOWN] << "}"
        << ",\"stream_bytes\":" << f.reassembly.deliveredBytes << ",\"gaps\":" << f.reassembly.gaps
        << ",\"gap_bytes\":" << f.reassembly.gapBytes
        << ",\"buffer_limit_gaps\":" << f.reassembly.bufferLimitGaps
        << ",\"worker_buffer_limit_gaps\":" << f.reassembly.workerLimitGaps
        << ",\"retransmitted_bytes\":" << f.reassembly.retransmittedBytes
        << ",\"out_of_order_segments\":" << f.reassembly.outOfOrder
        << ",\"overlap_conflict_bytes\":" << f.reassembly.conflictBytes << "}";
    return out.str();
}

std::string Runtime::healthJson() const {
    std::ostringstream out;
    out << "{\"status\":\"ok\",\"version\":" << mp::jsonString(MP_HOST_VERSION)
        << ",\"node\":" << mp::jsonString(nodeName_)
        << ",\"uptime_s\":" << (wallNs() - startedNs_) / 1000000000ULL
        << ",\"interval_ms\":" << intervalMs_.load() << ",\"plugins\":[";
    bool first = true;
    for (const auto& inst : instances_) {
        out << (first ? "" : ",") << "{\"slot\":" << mp::jsonString(inst->host->slot)
            << ",\"name\":" << mp::jsonString(inst->host->name)
            << ",\"kind\":" << mp::jsonString(kindName(inst->host->kind))
            << ",\"version\":" << mp::jsonString(inst->plugin->desc.version)
            << ",\"running\":" << (inst->host->running ? "true" : "false") << "}";
        first = false;
    }
    out << "]}";
    return out.str();
}

void Runtime::addBuiltinRoutes() {
    RouteSpec health;
    health.role = MP_ROLE_ANYONE;
    health.fn = [this](const mp_http_request&, mp_http_response& resp) {
        resp.status = 200;
        resp.contentType = "application/json";
        resp.body = healthJson();
    };
    http_->addRoute("/health", std::move(health));
    RouteSpec metrics;
    metrics.role = MP_ROLE_READ;
    metrics.fn = [this](const mp_http_request&, mp_http_response& resp) {
        resp.status = 200;
        resp.contentType = "text/plain; version=0.0.4";
        resp.body = metrics_.prometheus();
    };
    http_->addRoute("/metrics", std::move(metrics));
    // Live configuration, as the original probe: /config/update?report_period_ms=N (or
    // interval=SECONDS). Every key is checked before anything changes.
    // A change of state: admin role, POST only; the keys in the query string or a form body.
    RouteSpec update;
    update.role = MP_ROLE_ADMIN;
    update.methods = MP_HTTP_POST;
    update.fn = [this](const mp_http_request& req, mp_http_response& resp) {
        resp.contentType = "application/json";
        auto fail = [&](int status, const std::string& why) {
            resp.status = status;
            resp.body = "{\"error\":" + mp::jsonString(why) + "}";
        };
        const auto& params = static_cast<const RequestCtx*>(req.impl)->params;
        if (params.empty()) {
            fail(400, "nothing to update: give report_period_ms=N or interval=SECONDS");
            return;
        }
        uint64_t ms = 0;
        for (const auto& [key, value] : params) {
            uint64_t scale = 0;
            if (key == "report_period_ms") {
                scale = 1;
            } else if (key == "interval") {
                scale = 1000;
            } else {
                fail(400, "unknown key: " + key + " (known: report_period_ms, interval)");
                return;
            }
            uint64_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
                fail(400, key + ": not a whole number: " + value);
                return;
            }
            if (n > 86400000 / scale || n * scale < 100) {
                fail(400, key + ": out of range (100 ms to 1 day): " + value);
                return;
            }
            if (ms != 0 && ms != n * scale) {
                fail(400, "report_period_ms and interval disagree");
                return;
            }
            ms = n * scale;
        }
        uint64_t before = intervalMs_.load();
        setIntervalMs(ms);
        log(MP_LOG_INFO, "host",
            "report interval changed from " + std::to_string(before) + " ms to " +
                std::to_string(ms) + " ms by " + std::string(sv(req.principal)) + " (" +
                std::string(sv(req.remote_addr)) + ")");
        resp.status = 200;
        resp.body = "{\"interval_ms\":" + std::to_string(ms) +
                    ",\"previous_interval_ms\":" + std::to_string(before) + "}";
    };
    http_->addRoute("/config/update", std::move(update));
}

}  // namespace mp::host
