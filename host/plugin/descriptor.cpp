// SPDX-License-Identifier: Apache-2.0
#include "plugin/descriptor.hpp"

#include <cstring>
#include <set>
#include <stdexcept>

#include "config/values.hpp"

namespace mp::host {

bool validPluginName(const char* name) {
    if (name == nullptr) {
        return false;
    }
    size_t n = strnlen(name, 65);
    if (n == 0 || n > 64 || name[0] == '-' || name[n - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; ++i) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || (c == '-' && name[i + 1] == '-')) {
            return false;
        }
    }
    return true;
}

namespace {

bool boundedString(const char* s, size_t max) { return s != nullptr && strnlen(s, max + 1) <= max; }

}  // namespace

std::string checkDescriptor(const mp_plugin* raw, mp_plugin& out) {
    std::memset(&out, 0, sizeof out);
    if (raw == nullptr) {
        return "the entry function returned no descriptor";
    }
    // Versions first: they decide how much of the struct may be read.
    if (raw->abi_major != MP_ABI_MAJOR) {
        return "built for plugin ABI " + std::to_string(raw->abi_major) + "." +
               std::to_string(raw->abi_minor) + ", this host speaks ABI " +
               std::to_string(MP_ABI_MAJOR) + "." + std::to_string(MP_ABI_MINOR);
    }
    if (raw->abi_minor > MP_ABI_MINOR) {
        return "built for plugin ABI " + std::to_string(raw->abi_major) + "." +
               std::to_string(raw->abi_minor) + ", newer than this host's ABI " +
               std::to_string(MP_ABI_MAJOR) + "." + std::to_string(MP_ABI_MINOR) +
               " (upgrade mysqlprobe)";
    }
    if (raw->struct_size < kMinPluginSize) {
        return "descriptor is " + std::to_string(raw->struct_size) + " bytes, ABI 1." +
               std::to_string(raw->abi_minor) + " needs at least " + std::to_string(kMinPluginSize);
    }
    std::memcpy(&out, raw, raw->struct_size < sizeof out ? raw->struct_size : sizeof out);
    if (out.kind < MP_KIND_CAPTURE || out.kind > MP_KIND_SOURCE ||
        (out.kind == MP_KIND_SOURCE && out.abi_minor < 4)) {
        return "unknown plugin kind " + std::to_string(out.kind) +
               (out.kind == MP_KIND_SOURCE
                    ? " for ABI 1." + std::to_string(out.abi_minor) + " (sources came with 1.4)"
                    : std::string());
    }
    if (!validPluginName(out.name)) {
        std::string shown =
            out.name == nullptr ? "(null)" : std::string(out.name, strnlen(out.name, 80));
        return "invalid plugin name '" + shown +
               "' (expected kebab-case [a-z0-9-], at most 64 characters)";
    }
    if (!boundedString(out.version, 64) || out.version[0] == '\0') {
        return "plugin '" + std::string(out.name) + "' has no version string";
    }
    if (out.description != nullptr && !boundedString(out.description, 1024)) {
        return "plugin '" + std::string(out.name) + "' has a description over 1024 characters";
    }
    if (out.create == nullptr) {
        return "plugin '" + std::string(out.name) + "' lacks create()";
    }
    if (out.destroy == nullptr) {
        return "plugin '" + std::string(out.name) + "' lacks destroy()";
    }
    if (out.kind == MP_KIND_DECODER && (out.stream_open == nullptr || out.stream_data == nullptr ||
                                        out.stream_gap == nullptr || out.stream_close == nullptr)) {
        return "decoder '" + std::string(out.name) + "' lacks a stream_* hook";
    }
    if ((out.collect == nullptr) != (out.report == nullptr)) {
        return "plugin '" + std::string(out.name) +
               "' has one of collect() and report(): both or neither";
    }
    if (out.collect != nullptr && out.kind != MP_KIND_DECODER) {
        return "plugin '" + std::string(out.name) +
               "' has collect() and report(), which only decoders may have";
    }
    if (out.on_record != nullptr && out.kind != MP_KIND_SINK &&
        (out.kind != MP_KIND_CLUSTER || out.abi_minor < 5)) {
        return "plugin '" + std::string(out.name) + "' has on_record(), which only sinks and " +
               "(ABI 1.5 on) cluster plugins may have";
    }
    std::set<std::string> names;
    for (size_t i = 0; out.properties != nullptr && out.properties[i].name != nullptr; ++i) {
        const mp_property& p = out.properties[i];
        if (i >= 256) {
            return "plugin '" + std::string(out.name) + "' declares more than 256 properties";
        }
        if (!boundedString(p.name, 64) || p.name[0] == '\0') {
            return "plugin '" + std::string(out.name) + "': property " + std::to_string(i) +
                   " has an empty or over-long name";
        }
        if (!names.insert(p.name).second) {
            return "plugin '" + std::string(out.name) + "': property '" + p.name +
                   "' is declared twice";
        }
        if (p.type < MP_PROP_BOOL || p.type > MP_PROP_JSON ||
            (p.type == MP_PROP_JSON && out.abi_minor < 5)) {
            return "plugin '" + std::string(out.name) + "': property '" + p.name +
                   "' has unknown type " + std::to_string(p.type);
        }
        try {
            (void)parseDefault(p);
        } catch (const std::exception& e) {
            return "plugin '" + std::string(out.name) + "': " + e.what();
        }
    }
    return "";
}

}  // namespace mp::host
