// SPDX-License-Identifier: Apache-2.0
// One plugin instance as the host holds it: the mp_host handle the plugin sees, its validated
// configuration and the descriptor it came from.
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/values.hpp"
#include "plugin/registry.hpp"
#include "records/bus.hpp"

namespace mp::host {
class Runtime;
struct Instance;
}  // namespace mp::host

/// The host-side state behind one plugin instance's mp_host handle.
struct mp_host {
    mp::host::Runtime* rt = nullptr;
    mp::host::Instance* instance = nullptr;
    std::string name;  // plugin name
    std::string slot;  // "capture", "decoder[1]", "sinks[0]"
    uint32_t kind = 0;
    int index = 0;      // worker index for decoders
    std::string error;  // set by set_error during the current hook
    std::atomic<bool> running{false};
    std::atomic<bool> inputEnded{false};  // a source said MP_EVENT_INPUT_END (finite input read)
    std::atomic<bool> serving{false};     // start() returned OK: its routes and endpoints answer
};

struct mp_config {
    std::map<std::string, mp::host::Value> values;
};

namespace mp::host {

/// A websocket endpoint of an instance: the plugin's callbacks, called through dispatch.
struct WsBinding {
    Instance* inst = nullptr;
    mp_ws_handler plugin{};
};

/// One plugin instance and the descriptor it came from.
struct Instance {
    const LoadedPlugin* plugin = nullptr;
    std::string slotName;  // its slot ("decoders[1]"), whichever worker's copy it is
    std::atomic<bool> emitRefused{false};  // an event it may not emit was refused (logged once)
    std::unique_ptr<mp_host> host;
    mp_config config;
    void* self = nullptr;
    bool started = false;
    /// Serializes on_event and timer callbacks (docs/plugin-abi.md) unless the plugin declares
    /// MP_FLAG_CONCURRENT_EVENTS.
    std::recursive_mutex events;
    std::vector<std::unique_ptr<WsBinding>> websockets;
    /// What a capture told the host in create() (host_set): its server ports, its threads
    /// (0: not said).
    std::vector<uint16_t> serverPorts;
    size_t captureThreads = 0;
    /// Records: this instance as a producer (every instance may emit), and for a sink whether
    /// its slot takes the reports (`reports: false` does not).
    RecordBus::Producer* producer = nullptr;
    bool takesReports = true;
    std::atomic<mp_status> lastSinkStatus{MP_OK};  // the last status its on_event gave a report

    const mp_plugin& desc() const { return plugin->desc; }
    bool concurrent() const { return (plugin->desc.flags & MP_FLAG_CONCURRENT_EVENTS) != 0; }
};

}  // namespace mp::host
