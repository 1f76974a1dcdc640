// SPDX-License-Identifier: Apache-2.0
// The one way the host calls into a plugin instance. Every call catches what escapes the plugin
// (an exception is logged and turned into MP_ERROR, a 500 or a skipped callback), and:
//  - on_event and timer callbacks run only while the instance is running, serialized per
//    instance unless it declares MP_FLAG_CONCURRENT_EVENTS;
//  - HTTP handlers and websocket callbacks run concurrently (the server's threads), only while
//    the instance is serving (the server answers 503 before start() returned);
//  - lifecycle hooks run on the control thread; collect/report on the report thread.
#pragma once

#include <mp/abi.h>

#include <exception>
#include <string>

#include "core/log.hpp"
#include "plugin/instance.hpp"

namespace mp::host::dispatch {

/// Runs f, a call into `inst`: false when an exception escaped it. The exception is logged under
/// the plugin's name, naming `hook` ("stream_data"), unless `what` takes its message (for a
/// caller that reports it itself).
template <class F>
bool guarded(Instance& inst, const char* hook, F&& f, std::string* what = nullptr) {
    auto escaped = [&](const std::string& message) {
        if (what != nullptr) {
            *what = message;
        } else {
            log(MP_LOG_ERROR, inst.host->name,
                std::string("an exception escaped ") + hook +
                    (message.empty() ? std::string() : ": " + message));
        }
    };
    try {
        f();
        return true;
    } catch (const std::exception& e) {
        escaped(e.what());
    } catch (...) {
        escaped("");
    }
    return false;
}

/// create(): MP_OK with inst.self set, or a failing status with inst.host->error saying why.
mp_status create(Instance& inst, const mp_host_api* api);

/// on_event. MP_ECLOSED when the instance is not running (or has no on_event: MP_OK).
mp_status event(Instance& inst, const mp_event& ev);
/// A timer callback the instance started.
void timer(Instance& inst, void (*fn)(void*), void* user);
/// An HTTP handler of the instance; false when an exception escaped it (answer 500).
bool http(Instance& inst, mp_http_handler fn, void* user, const mp_http_request& req,
          mp_http_response* resp);

/// start(): MP_OK, or the hook's status with inst.host->error set.
mp_status start(Instance& inst);
void stop(Instance& inst);
void destroy(Instance& inst);

/// collect() of a decoder instance (NULL when it has nothing or threw).
void* collect(Instance& inst, uint64_t seq, uint64_t ts);
/// report() of worker 0's instance; the members it wrote are appended to `out`.
mp_status report(Instance& inst, void* const* parts, size_t count, std::string& out);

/// on_record of a sink: its status (MP_ECLOSED when the sink is not running, MP_ERROR when it
/// threw). Not serialized with on_event: one record thread per sink calls it.
mp_status record(Instance& inst, const mp_record& rec, uint64_t token);
/// on_delivered of a producer (nothing when it has none), until the instance is destroyed.
void delivered(Instance& inst, uint64_t seq);

/// The handler the server is given for a websocket endpoint of `inst`: same limits and role,
/// callbacks that go through this layer (its `user` is host-owned and lives as long as `inst`).
mp_ws_handler websocket(Instance& inst, const mp_ws_handler& handler);

}  // namespace mp::host::dispatch
