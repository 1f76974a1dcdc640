// SPDX-License-Identifier: Apache-2.0
// The C services table every plugin receives (mp_host_api): argument checks, then the runtime.
#include <cstring>
#include <mp/sdk.hpp>

#include "app/runtime.hpp"
#include "core/clock.hpp"
#include "core/timers.hpp"

namespace mp::host {

namespace {

void apiLog(mp_host* h, int level, mp_str msg) {
    if (h != nullptr && h->rt != nullptr) {
        h->rt->logFrom(h, level, mp::view(msg));
    }
}

void apiSetError(mp_host* h, mp_status /*code*/, mp_str msg) {
    if (h != nullptr) {
        h->error.assign(mp::view(msg).substr(0, 4096));
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
    // A JSON property (1.5) reads as its JSON text through the string getter.
    if (it->second.type != type && !(type == MP_PROP_STRING && it->second.type == MP_PROP_JSON)) {
        st = MP_EINVAL;
        return nullptr;
    }
    st = MP_OK;
    return &it->second;
}

// One typed getter: look the key up as `type`, then copy it out with `read`.
template <uint32_t Type, class Out, class Read>
mp_status getTyped(const mp_config* cfg, const char* key, Out* out, Read read) {
    mp_status st = MP_OK;
    const Value* v = lookup(cfg, key, Type, st);
    if (v != nullptr && out != nullptr) {
        *out = read(*v);
    }
    return st;
}

mp_status apiGetStr(const mp_config* cfg, const char* key, mp_str* out) {
    return getTyped<MP_PROP_STRING>(cfg, key, out, [](const Value& v) {
        return mp_str{v.s.c_str(), v.s.size()};
    });
}

mp_status apiGetI64(const mp_config* cfg, const char* key, int64_t* out) {
    return getTyped<MP_PROP_INT>(cfg, key, out, [](const Value& v) { return v.i; });
}

mp_status apiGetF64(const mp_config* cfg, const char* key, double* out) {
    return getTyped<MP_PROP_DOUBLE>(cfg, key, out, [](const Value& v) { return v.d; });
}

mp_status apiGetBool(const mp_config* cfg, const char* key, int* out) {
    return getTyped<MP_PROP_BOOL>(cfg, key, out, [](const Value& v) { return v.b ? 1 : 0; });
}

mp_status apiListSize(const mp_config* cfg, const char* key, size_t* out) {
    return getTyped<MP_PROP_STRING_LIST>(cfg, key, out,
                                         [](const Value& v) { return v.list.size(); });
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

uint64_t apiNow(mp_host* /*h*/) { return wallClockNs(); }

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

void apiTimerStop(mp_timer* t) {
    if (t != nullptr) {
        TimerService::stopTimer(t);  // the handle knows its service
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
    resp->contentType.assign(mp::view(contentType));
    resp->body.assign(mp::view(body));
}

mp_status apiWsEndpoint(mp_host* h, const char* path, const mp_ws_handler* handler) {
    if (h == nullptr || h->rt == nullptr || path == nullptr || path[0] != '/' ||
        handler == nullptr ||
        handler->struct_size < offsetof(mp_ws_handler, on_close) + sizeof(handler->on_close)) {
        return MP_EINVAL;
    }
    return h->rt->wsEndpoint(h, path, handler);
}

mp_status apiHostSet(mp_host* h, const char* key, mp_str value) {
    if (h == nullptr || h->rt == nullptr || key == nullptr ||
        (value.data == nullptr && value.len != 0)) {
        return MP_EINVAL;
    }
    return h->rt->hostSet(h, key, mp::view(value));
}

// The record has every field up to `seq` (the 1.4 layout): the host reads no field it lacks.
bool wholeRecord(const mp_record* rec) {
    return rec != nullptr && rec->struct_size >= offsetof(mp_record, seq) + sizeof(rec->seq);
}

mp_status apiEmitRecord(mp_host* h, const mp_record* rec) {
    if (h == nullptr || h->rt == nullptr || !wholeRecord(rec)) {
        return MP_EINVAL;
    }
    return h->rt->recordFrom(h, *rec);
}

mp_status apiEmitRecords(mp_host* h, const mp_record* const* recs, size_t count, size_t* taken) {
    if (taken != nullptr) {
        *taken = 0;
    }
    if (h == nullptr || h->rt == nullptr || (recs == nullptr && count != 0)) {
        return MP_EINVAL;
    }
    // Every record is checked before any is taken: the host reads no field a record lacks.
    size_t whole = 0;
    while (whole < count && wholeRecord(recs[whole])) {
        ++whole;
    }
    size_t n = 0;
    mp_status st = whole == 0 ? MP_OK : h->rt->recordsFrom(h, recs, whole, n);
    if (taken != nullptr) {
        *taken = n;
    }
    return st == MP_OK && whole < count ? MP_EINVAL : st;
}

void apiRecordDone(mp_host* h, uint64_t token, mp_status status) {
    if (h != nullptr && h->rt != nullptr) {
        h->rt->recordDone(token, status);
    }
}

void apiShutdown(mp_host* h, int code, mp_str reason) {
    if (h != nullptr && h->rt != nullptr) {
        h->rt->requestShutdown(code, h->name + ": " + std::string(mp::view(reason)));
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
    apiHostSet,
    apiEmitRecord,
    apiRecordDone,
    apiEmitRecords,
};

}  // namespace

const mp_host_api* hostApi() { return &kApi; }

}  // namespace mp::host
