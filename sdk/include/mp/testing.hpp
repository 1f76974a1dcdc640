// SPDX-License-Identifier: Apache-2.0
// A fake host for plugin authors' unit tests: the whole mp_host_api, in memory, with nothing
// running behind it. Create an instance of your plugin from its descriptor, drive its hooks, and
// look at what it did: events emitted, counters, logs, routes, timers, websocket messages.
//
//   mp::testing::FakeHost host;
//   host.config("path", "/tmp/x.jsonl");                      // property values, as in YAML
//   auto sink = host.create(mp_plugin_entry_v1(host.api()));   // create() with the defaults
//   sink.start();
//   sink.event(MP_EVENT_REPORT, R"({"version":1})");
//   CHECK(host.counter("reports_written_total") == 1);
//
// Decoders: sink.open(flow) / data / gap / close, then sink.collectAndReport() runs the 1.3
// collect() of every instance and report() of the first, as the host does at an interval's end.
// Header-only; needs C++17. Nothing here is thread-safe: drive the plugin from the test thread
// (timers fire only when fireTimers() is called).
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mp/sdk.hpp>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mp::testing {

/// What the plugin emitted (copied).
struct Emitted {
    uint32_t type = 0;
    uint64_t ts = 0;
    uint64_t seq = 0;
    std::string contentType;
    std::string payload;
};

/// One record a plugin emitted (emit_record).
struct Record {
    std::string stream, key, id, contentType, payload;
    uint64_t ts = 0;
    uint64_t seq = 0;
};

/// One HTTP request to a route the plugin registered, and the answer.
struct Response {
    int status = 0;  // 0: the handler did not answer
    std::string contentType;
    std::string body;
};

/// One plugin instance made by FakeHost::create(); stopped and destroyed with it.
class Instance {
  public:
    Instance(const mp_plugin* desc, void* self, size_t index)
        : desc_(desc), self_(self), index_(index) {}
    Instance(Instance&& o) noexcept
        : desc_(o.desc_),
          self_(std::exchange(o.self_, nullptr)),
          index_(o.index_),
          started_(o.started_) {}
    Instance(const Instance&) = delete;
    Instance& operator=(const Instance&) = delete;
    ~Instance() {
        if (self_ != nullptr) {
            if (started_ && desc_->stop != nullptr) {
                desc_->stop(self_);
            }
            desc_->destroy(self_);
        }
    }

    mp_status start() {
        started_ = true;
        return desc_->start != nullptr ? desc_->start(self_) : MP_OK;
    }
    void stop() {
        if (started_ && desc_->stop != nullptr) {
            desc_->stop(self_);
        }
        started_ = false;
    }
    mp_status event(uint32_t type, std::string_view payload, uint64_t ts = 0, uint64_t seq = 0) {
        mp_event ev{};
        ev.struct_size = sizeof ev;
        ev.type = type;
        ev.ts_ns = ts;
        ev.seq = seq;
        ev.content_type = mp_str{"application/json", 16};
        ev.payload = mp_bytes{reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
        return desc_->on_event != nullptr ? desc_->on_event(self_, &ev) : MP_OK;
    }
    void tick(uint64_t ts) {
        if (desc_->on_tick != nullptr) {
            desc_->on_tick(self_, ts);
        }
    }
    // Decoders.
    void* open(const mp_flow& flow) {
        void* s = nullptr;
        if (desc_->stream_open(self_, &flow, &s) != MP_OK) {
            throw std::runtime_error("stream_open refused the flow");
        }
        return s;
    }
    void data(void* s, uint32_t dir, std::string_view bytes, uint64_t ts = 0) {
        desc_->stream_data(self_, s, dir,
                           mp_bytes{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                           ts);
    }
    void gap(void* s, uint32_t dir, uint64_t len, uint64_t ts = 0) {
        desc_->stream_gap(self_, s, dir, len, ts);
    }
    void close(void* s, uint32_t reason = MP_CLOSE_FIN, uint64_t ts = 0) {
        desc_->stream_close(self_, s, reason, ts);
    }

    // Records (ABI 1.4). A sink: one record as the host's record thread would give it.
    mp_status record(std::string_view stream, std::string_view payload, uint64_t seq,
                     uint64_t token, std::string_view producer = "sources[0]",
                     std::string_view key = {}) {
        mp_record r{};
        r.struct_size = sizeof r;
        r.stream = mp_str{stream.data(), stream.size()};
        r.key = mp_str{key.data(), key.size()};
        r.content_type = mp_str{"application/json", 16};
        r.payload = mp_bytes{reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
        r.seq = seq;
        r.producer = mp_str{producer.data(), producer.size()};
        return desc_->on_record != nullptr ? desc_->on_record(self_, &r, token) : MP_ERROR;
    }
    /// A producer: its delivered mark.
    void delivered(uint64_t seq) {
        if (desc_->on_delivered != nullptr) {
            desc_->on_delivered(self_, seq);
        }
    }

    void* self() const { return self_; }
    const mp_plugin& descriptor() const { return *desc_; }
    size_t index() const { return index_; }

  private:
    const mp_plugin* desc_;
    void* self_;
    size_t index_;
    bool started_ = false;
};

class FakeHost {
  public:
    FakeHost() {
        settings_["node.name"] = "test-node";
        settings_["server.address"] = "127.0.0.1";
        settings_["server.port"] = "0";
        settings_["interval.ms"] = "5000";
        settings_["host.version"] = "test";
        settings_["probe.workers"] = "1";
        settings_["auth.mode"] = "protected";
        settings_["stream.inline"] = "false";
    }
    FakeHost(const FakeHost&) = delete;
    FakeHost& operator=(const FakeHost&) = delete;

    const mp_host_api* api() const { return &api_; }

    /// A property value as YAML would give it (lists: comma-separated). Unset keys take the
    /// property's default.
    FakeHost& config(const std::string& key, std::string value) {
        config_[key] = std::move(value);
        return *this;
    }
    /// A host_get() value ("node.name", "interval.ms", ...).
    FakeHost& setting(const std::string& key, std::string value) {
        settings_[key] = std::move(value);
        return *this;
    }
    /// now_ns() answers this (0: the real clock is not used; tests set it).
    FakeHost& clock(uint64_t ns) {
        now_ = ns;
        return *this;
    }

    /// create() of one instance (decoders: call it once per worker). Throws with the plugin's
    /// set_error message when create() fails.
    Instance create(const mp_plugin* desc) {
        if (desc == nullptr) {
            throw std::runtime_error("no descriptor");
        }
        desc_ = desc;
        Config& cfg = *configs_.emplace_back(std::make_unique<Config>(*this, desc));
        Handle& h = *handles_.emplace_back(std::make_unique<Handle>(Handle{this, handles_.size()}));
        void* self = nullptr;
        error_.clear();
        mp_status st = desc->create(raw(h), &api_, reinterpret_cast<const mp_config*>(&cfg), &self);
        if (st != MP_OK || self == nullptr) {
            throw std::runtime_error("create failed: " +
                                     (error_.empty() ? "status " + std::to_string(st) : error_));
        }
        return Instance(desc, self, h.index);
    }

    /// The 1.3 decoder exchange: collect() of every instance, then report() of the first; the
    /// members it wrote. Throws when the decoder has no collect().
    std::string collectAndReport(const std::vector<Instance*>& workers, uint64_t seq = 1,
                                 uint64_t ts = 0) {
        if (workers.empty() || workers[0]->descriptor().collect == nullptr) {
            throw std::runtime_error("not a decoder with collect()/report()");
        }
        std::vector<void*> parts;
        for (Instance* w : workers) {
            parts.push_back(w->descriptor().collect(w->self(), seq, ts));
        }
        std::string out;
        mp_writer writer{};
        writer.struct_size = sizeof writer;
        writer.ctx = &out;
        writer.write = [](void* ctx, mp_str text) {
            static_cast<std::string*>(ctx)->append(text.data, text.len);
        };
        mp_status st = workers[0]->descriptor().report(workers[0]->self(), parts.data(),
                                                       parts.size(), &writer);
        if (st != MP_OK) {
            throw std::runtime_error("report failed: " + error_);
        }
        return out;
    }

    /// Runs every timer once (in the order they were started), as if each period had passed.
    void fireTimers() {
        for (size_t i = 0; i < timers_.size(); ++i) {
            if (timers_[i]->active) {
                timers_[i]->fn(timers_[i]->user);
            }
        }
    }
    /// Calls the handler of a route the plugin registered, as a caller of `role`.
    Response http(const std::string& method, const std::string& path, const std::string& query = "",
                  const std::string& body = "", uint32_t role = MP_ROLE_ADMIN) {
        auto it = routes_.find(path);
        if (it == routes_.end()) {
            return Response{404, "", ""};
        }
        Request req{query, body, {}};
        mp_http_request r{};
        r.struct_size = sizeof r;
        r.method = toStr(method);
        r.path = toStr(path);
        r.query = toStr(req.query);
        r.body = toStr(req.body);
        r.remote_addr = mp_str{"127.0.0.1:40000", 15};
        r.impl = &req;
        r.role = role;
        r.principal = mp_str{"test", 4};
        Response resp;
        it->second.handler(it->second.user, &r, reinterpret_cast<mp_http_response*>(&resp));
        return resp;
    }

    // What the plugin did.
    const std::vector<Emitted>& emitted() const { return emitted_; }
    const std::vector<std::pair<int, std::string>>& logs() const { return logs_; }
    bool logged(std::string_view part) const {
        for (const auto& [level, text] : logs_) {
            if (text.find(part) != std::string::npos) {
                return true;
            }
        }
        return false;
    }
    /// A counter's value (registered names, without the mysqlprobe_<plugin>_ prefix).
    int64_t counter(const std::string& name) const {
        auto it = counters_.find(name);
        return it == counters_.end() ? 0 : it->second->value;
    }
    bool hasCounter(const std::string& name) const { return counters_.count(name) != 0; }
    bool hasRoute(const std::string& path) const { return routes_.count(path) != 0; }
    const std::map<std::string, std::string>& declared() const { return declared_; }
    std::optional<std::pair<int, std::string>> shutdownRequest() const { return shutdown_; }
    size_t frames() const { return frames_; }
    /// Records emitted so far (emit_record may be called from the plugin's threads).
    std::vector<Record> records() const {
        std::lock_guard<std::mutex> lock(recordsMu_);
        return records_;
    }
    /// The status a sink gave each token with record_done.
    std::map<uint64_t, mp_status> recordsDone() const {
        std::lock_guard<std::mutex> lock(recordsMu_);
        return done_;
    }
    /// What emit_record answers from now on (MP_OK: taken).
    void recordAnswer(mp_status st) { recordAnswer_ = st; }

  private:
    struct Handle {
        FakeHost* host;
        size_t index;
    };
    struct Config {
        Config(FakeHost& h, const mp_plugin* desc) {
            for (size_t i = 0; desc->properties != nullptr && desc->properties[i].name; ++i) {
                const mp_property& p = desc->properties[i];
                auto it = h.config_.find(p.name);
                if (it != h.config_.end()) {
                    values[p.name] = {p.type, it->second};
                } else if (p.default_value != nullptr) {
                    values[p.name] = {p.type, p.default_value};
                } else {
                    values[p.name] = {p.type, ""};
                }
            }
            for (auto& [key, v] : values) {
                if (v.first == MP_PROP_STRING_LIST) {
                    size_t pos = 0;
                    while (!v.second.empty() && pos <= v.second.size()) {
                        size_t comma = v.second.find(',', pos);
                        if (comma == std::string::npos) {
                            comma = v.second.size();
                        }
                        lists[key].push_back(v.second.substr(pos, comma - pos));
                        pos = comma + 1;
                    }
                }
            }
        }
        std::map<std::string, std::pair<uint32_t, std::string>> values;
        std::map<std::string, std::vector<std::string>> lists;
    };
    struct Counter {
        int64_t value = 0;
    };
    struct Timer {
        void (*fn)(void*);
        void* user;
        bool active = true;
    };
    struct Route {
        mp_http_handler handler;
        void* user;
    };
    struct Request {
        std::string query;
        std::string body;
        std::string scratch;
    };

    static mp_str toStr(std::string_view s) { return mp_str{s.data(), s.size()}; }
    mp_host* raw(Handle& h) { return reinterpret_cast<mp_host*>(&h); }
    static FakeHost& self(mp_host* h) { return *reinterpret_cast<Handle*>(h)->host; }
    static const Config& cfg(const mp_config* c) { return *reinterpret_cast<const Config*>(c); }

    static mp_status find(const mp_config* c, const char* key, uint32_t type,
                          const std::string** out) {
        auto it = cfg(c).values.find(key);
        if (it == cfg(c).values.end()) {
            return MP_ENOENT;
        }
        if (it->second.first != type) {
            return MP_EINVAL;
        }
        *out = &it->second.second;
        return MP_OK;
    }

    static mp_status getStr(const mp_config* c, const char* key, mp_str* out) {
        const std::string* v = nullptr;
        mp_status st = find(c, key, MP_PROP_STRING, &v);
        if (st == MP_OK) {
            *out = toStr(*v);
        }
        return st;
    }
    static mp_status getI64(const mp_config* c, const char* key, int64_t* out) {
        const std::string* v = nullptr;
        mp_status st = find(c, key, MP_PROP_INT, &v);
        if (st == MP_OK) {
            *out = std::strtoll(v->c_str(), nullptr, 10);
        }
        return st;
    }
    static mp_status getF64(const mp_config* c, const char* key, double* out) {
        const std::string* v = nullptr;
        mp_status st = find(c, key, MP_PROP_DOUBLE, &v);
        if (st == MP_OK) {
            *out = std::strtod(v->c_str(), nullptr);
        }
        return st;
    }
    static mp_status getBool(const mp_config* c, const char* key, int* out) {
        const std::string* v = nullptr;
        mp_status st = find(c, key, MP_PROP_BOOL, &v);
        if (st == MP_OK) {
            *out = (*v == "true" || *v == "yes" || *v == "on" || *v == "1") ? 1 : 0;
        }
        return st;
    }
    static mp_status listSize(const mp_config* c, const char* key, size_t* out) {
        const std::string* v = nullptr;
        mp_status st = find(c, key, MP_PROP_STRING_LIST, &v);
        if (st == MP_OK) {
            auto it = cfg(c).lists.find(key);
            *out = it == cfg(c).lists.end() ? 0 : it->second.size();
        }
        return st;
    }
    static mp_status listItem(const mp_config* c, const char* key, size_t i, mp_str* out) {
        size_t n = 0;
        mp_status st = listSize(c, key, &n);
        if (st != MP_OK) {
            return st;
        }
        if (i >= n) {
            return MP_ENOENT;
        }
        *out = toStr(cfg(c).lists.at(key)[i]);
        return MP_OK;
    }

    static mp_host_api makeApi() {
        mp_host_api a{};
        a.struct_size = sizeof(mp_host_api);
        a.abi_major = MP_ABI_MAJOR;
        a.abi_minor = MP_ABI_MINOR;
        a.log = [](mp_host* h, int level, mp_str msg) {
            self(h).logs_.emplace_back(level, std::string(msg.data, msg.len));
        };
        a.set_error = [](mp_host* h, mp_status, mp_str msg) {
            self(h).error_.assign(msg.data, msg.len);
        };
        a.config_get_str = &getStr;
        a.config_get_i64 = &getI64;
        a.config_get_f64 = &getF64;
        a.config_get_bool = &getBool;
        a.config_get_list_size = &listSize;
        a.config_get_list_item = &listItem;
        a.host_get = [](mp_host* h, const char* key, mp_str* out) -> mp_status {
            FakeHost& f = self(h);
            if (std::string_view(key) == "instance.index") {
                f.scratch_ = std::to_string(reinterpret_cast<Handle*>(h)->index);
                *out = toStr(f.scratch_);
                return MP_OK;
            }
            auto it = f.settings_.find(key);
            if (it == f.settings_.end()) {
                return MP_ENOENT;
            }
            *out = toStr(it->second);
            return MP_OK;
        };
        a.emit = [](mp_host* h, const mp_event* ev) -> mp_status {
            Emitted e;
            e.type = ev->type;
            e.ts = ev->ts_ns;
            e.seq = ev->seq;
            e.contentType.assign(ev->content_type.data, ev->content_type.len);
            e.payload.assign(reinterpret_cast<const char*>(ev->payload.data), ev->payload.len);
            self(h).emitted_.push_back(std::move(e));
            return MP_OK;
        };
        a.emit_frames = [](mp_host* h, const mp_frame*, size_t count) -> mp_status {
            self(h).frames_ += count;
            return MP_OK;
        };
        a.now_ns = [](mp_host* h) -> uint64_t { return self(h).now_; };
        a.counter_register = [](mp_host* h, const char* name, const char*,
                                uint32_t) -> mp_counter* {
            auto& c = self(h).counters_[name];
            if (!c) {
                c = std::make_unique<Counter>();
            }
            return reinterpret_cast<mp_counter*>(c.get());
        };
        a.counter_add = [](mp_counter* c, uint64_t d) {
            reinterpret_cast<Counter*>(c)->value += static_cast<int64_t>(d);
        };
        a.counter_set = [](mp_counter* c, int64_t v) { reinterpret_cast<Counter*>(c)->value = v; };
        a.timer_start = [](mp_host* h, uint64_t, uint64_t, void (*fn)(void*),
                           void* user) -> mp_timer* {
            auto& t = self(h).timers_.emplace_back(std::make_unique<Timer>(Timer{fn, user}));
            return reinterpret_cast<mp_timer*>(t.get());
        };
        a.timer_stop = [](mp_timer* t) { reinterpret_cast<Timer*>(t)->active = false; };
        a.http_route = [](mp_host* h, const char* path, mp_http_handler fn,
                          void* user) -> mp_status {
            return self(h).routes_.emplace(path, Route{fn, user}).second ? MP_OK : MP_EINVAL;
        };
        a.http_reply = [](mp_http_response* r, int status, mp_str type, mp_str body) {
            auto* resp = reinterpret_cast<Response*>(r);
            resp->status = status;
            resp->contentType.assign(type.data, type.len);
            resp->body.assign(body.data, body.len);
        };
        a.http_query_param = [](const mp_http_request* r, const char* name,
                                mp_str* out) -> mp_status {
            auto* req = const_cast<Request*>(static_cast<const Request*>(r->impl));
            // key=value pairs, query then form body, names and values percent-decoded and
            // '+' read as a space, as the host does.
            auto decode = [](std::string_view in) {
                std::string outText;
                for (size_t i = 0; i < in.size(); ++i) {
                    auto hex = [](char c) {
                        return c >= '0' && c <= '9'   ? c - '0'
                               : c >= 'a' && c <= 'f' ? c - 'a' + 10
                               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                      : -1;
                    };
                    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 &&
                        hex(in[i + 2]) >= 0) {
                        outText += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
                        i += 2;
                    } else {
                        outText += in[i] == '+' ? ' ' : in[i];
                    }
                }
                return outText;
            };
            for (const std::string* src : {&req->query, &req->body}) {
                size_t pos = 0;
                while (pos <= src->size()) {
                    size_t amp = src->find('&', pos);
                    if (amp == std::string::npos) {
                        amp = src->size();
                    }
                    std::string part = src->substr(pos, amp - pos);
                    size_t eq = part.find('=');
                    if (decode(std::string_view(part).substr(0, eq)) == name) {
                        req->scratch = eq == std::string::npos ? "" : decode(part.substr(eq + 1));
                        *out = toStr(req->scratch);
                        return MP_OK;
                    }
                    pos = amp + 1;
                }
            }
            return MP_ENOENT;
        };
        a.ws_endpoint = [](mp_host*, const char*, const mp_ws_handler*) -> mp_status {
            return MP_OK;  // accepted; the fake has no network to serve it on
        };
        a.ws_send = [](mp_ws_conn*, uint32_t, mp_bytes) -> mp_status { return MP_ECLOSED; };
        a.ws_close = [](mp_ws_conn*, uint16_t, mp_str) {};
        a.request_shutdown = [](mp_host* h, int code, mp_str reason) {
            self(h).shutdown_ = std::make_pair(code, std::string(reason.data, reason.len));
        };
        a.http_route_ex = [](mp_host* h, const char* path, const mp_route* r) -> mp_status {
            return self(h).routes_.emplace(path, Route{r->handler, r->user}).second ? MP_OK
                                                                                    : MP_EINVAL;
        };
        a.http_header = [](const mp_http_request*, const char*, mp_str*) -> mp_status {
            return MP_ENOENT;
        };
        a.host_set = [](mp_host* h, const char* key, mp_str value) -> mp_status {
            self(h).declared_[key] = std::string(value.data, value.len);
            return MP_OK;
        };
        a.emit_record = [](mp_host* h, const mp_record* r) -> mp_status {
            FakeHost& f = self(h);
            mp_status st = f.recordAnswer_.load();
            if (st == MP_OK) {
                Record rec;
                rec.stream.assign(r->stream.data, r->stream.len);
                rec.key.assign(r->key.data, r->key.len);
                rec.id.assign(r->id.data, r->id.len);
                rec.contentType.assign(r->content_type.data, r->content_type.len);
                rec.payload.assign(reinterpret_cast<const char*>(r->payload.data), r->payload.len);
                rec.ts = r->ts_ns;
                rec.seq = r->seq;
                std::lock_guard<std::mutex> lock(f.recordsMu_);
                f.records_.push_back(std::move(rec));
            }
            return st;
        };
        a.record_done = [](mp_host* h, uint64_t token, mp_status st) {
            FakeHost& f = self(h);
            std::lock_guard<std::mutex> lock(f.recordsMu_);
            f.done_[token] = st;
        };
        // Like emit_record for each in turn (the answer set by recordAnswer applies to the
        // first: nothing is taken when it is not MP_OK).
        a.emit_records = [](mp_host* h, const mp_record* const* rs, size_t n,
                            size_t* taken) -> mp_status {
            return mp::emitEach(self(h).api(), h, rs, n, taken);
        };
        return a;
    }

    mutable std::mutex recordsMu_;
    std::vector<Record> records_;
    std::map<uint64_t, mp_status> done_;
    std::atomic<mp_status> recordAnswer_{MP_OK};
    const mp_host_api api_ = makeApi();
    const mp_plugin* desc_ = nullptr;
    std::map<std::string, std::string> config_;
    std::map<std::string, std::string> settings_;
    std::map<std::string, std::string> declared_;
    std::vector<std::unique_ptr<Config>> configs_;
    std::vector<std::unique_ptr<Handle>> handles_;
    std::vector<Emitted> emitted_;
    std::vector<std::pair<int, std::string>> logs_;
    std::map<std::string, std::unique_ptr<Counter>> counters_;
    std::vector<std::unique_ptr<Timer>> timers_;
    std::map<std::string, Route> routes_;
    std::optional<std::pair<int, std::string>> shutdown_;
    std::string error_;
    std::string scratch_;
    uint64_t now_ = 0;
    size_t frames_ = 0;
};

}  // namespace mp::testing
