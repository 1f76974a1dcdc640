// SPDX-License-Identifier: Apache-2.0
#include "plugin/dispatch.hpp"

#include <mutex>

namespace mp::host::dispatch {

namespace {

// Serialized per instance unless the plugin said it takes concurrent calls.
template <class F>
void serialized(Instance& inst, F&& f) {
    if (inst.concurrent()) {
        f();
        return;
    }
    std::lock_guard<std::recursive_mutex> lock(inst.events);
    f();
}

WsBinding& binding(void* user) { return *static_cast<WsBinding*>(user); }

mp_status wsOpen(void* user, mp_ws_conn* conn, const mp_http_request* req) {
    WsBinding& b = binding(user);
    mp_status st = MP_ERROR;
    if (b.plugin.on_open == nullptr) {
        return MP_OK;
    }
    guarded(*b.inst, "a websocket's on_open",
            [&] { st = b.plugin.on_open(b.plugin.user, conn, req); });
    return st;
}

void wsMessage(void* user, mp_ws_conn* conn, uint32_t opcode, mp_bytes data) {
    WsBinding& b = binding(user);
    if (b.plugin.on_message != nullptr) {
        guarded(*b.inst, "a websocket's on_message",
                [&] { b.plugin.on_message(b.plugin.user, conn, opcode, data); });
    }
}

void wsClose(void* user, mp_ws_conn* conn) {
    WsBinding& b = binding(user);
    if (b.plugin.on_close != nullptr) {
        guarded(*b.inst, "a websocket's on_close", [&] { b.plugin.on_close(b.plugin.user, conn); });
    }
}

}  // namespace

mp_status event(Instance& inst, const mp_event& ev) {
    if (!inst.host->running.load()) {
        return MP_ECLOSED;
    }
    if (inst.desc().on_event == nullptr) {
        return MP_OK;
    }
    mp_status st = MP_ERROR;
    serialized(inst, [&] {
        if (inst.host->running.load()) {  // it may have stopped while this call waited
            guarded(inst, "on_event", [&] { st = inst.desc().on_event(inst.self, &ev); });
        } else {
            st = MP_ECLOSED;
        }
    });
    return st;
}

void timer(Instance& inst, void (*fn)(void*), void* user) {
    if (!inst.host->running.load()) {
        return;  // a timer left running across stop() calls nothing
    }
    serialized(inst, [&] { guarded(inst, "a timer callback", [&] { fn(user); }); });
}

bool http(Instance& inst, mp_http_handler fn, void* user, const mp_http_request& req,
          mp_http_response* resp) {
    return guarded(inst, "an HTTP handler", [&] { fn(user, &req, resp); });
}

mp_status record(Instance& inst, const mp_record& rec, uint64_t token) {
    if (!inst.host->running.load() || inst.desc().on_record == nullptr) {
        return MP_ECLOSED;
    }
    mp_status st = MP_ERROR;
    guarded(inst, "on_record", [&] { st = inst.desc().on_record(inst.self, &rec, token); });
    return st;
}

void delivered(Instance& inst, uint64_t seq) {
    if (inst.desc().on_delivered != nullptr && inst.self != nullptr) {
        guarded(inst, "on_delivered", [&] { inst.desc().on_delivered(inst.self, seq); });
    }
}

mp_status create(Instance& inst, const mp_host_api* api) {
    mp_status st = MP_ERROR;
    std::string what;
    if (!guarded(
            inst, "create()",
            [&] { st = inst.desc().create(inst.host.get(), api, &inst.config, &inst.self); },
            &what)) {
        inst.host->error = what.empty() ? "an exception escaped the plugin"
                                        : "exception escaped the plugin: " + what;
        return MP_ERROR;
    }
    if (st == MP_OK && inst.self == nullptr) {
        inst.host->error = "create() returned OK but no instance";
        return MP_ERROR;
    }
    return st;
}

mp_status start(Instance& inst) {
    if (inst.desc().start == nullptr) {
        return MP_OK;
    }
    mp_status st = MP_ERROR;
    if (!guarded(inst, "start()", [&] { st = inst.desc().start(inst.self); })) {
        inst.host->error = "an exception escaped the plugin";
    }
    return st;
}

void stop(Instance& inst) {
    if (inst.desc().stop != nullptr) {
        guarded(inst, "stop()", [&] { inst.desc().stop(inst.self); });
    }
}

void destroy(Instance& inst) {
    guarded(inst, "destroy()", [&] { inst.desc().destroy(inst.self); });
    inst.self = nullptr;
}

void* collect(Instance& inst, uint64_t seq, uint64_t ts) {
    void* part = nullptr;
    guarded(inst, "collect()", [&] { part = inst.desc().collect(inst.self, seq, ts); });
    return part;
}

mp_status report(Instance& inst, void* const* parts, size_t count, std::string& out) {
    mp_writer w{};
    w.struct_size = sizeof w;
    w.ctx = &out;
    w.write = [](void* ctx, mp_str text) {
        if (text.data != nullptr) {
            static_cast<std::string*>(ctx)->append(text.data, text.len);
        }
    };
    mp_status st = MP_ERROR;
    guarded(inst, "report()", [&] { st = inst.desc().report(inst.self, parts, count, &w); });
    return st;
}

mp_ws_handler websocket(Instance& inst, const mp_ws_handler& handler) {
    auto b = std::make_unique<WsBinding>();
    b->inst = &inst;
    b->plugin = handler;
    mp_ws_handler h = handler;
    h.user = b.get();
    h.on_open = &wsOpen;
    h.on_message = handler.on_message != nullptr ? &wsMessage : nullptr;
    h.on_close = &wsClose;
    inst.websockets.push_back(std::move(b));
    return h;
}

}  // namespace mp::host::dispatch
