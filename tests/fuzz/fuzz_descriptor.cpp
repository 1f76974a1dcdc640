// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the plugin descriptor check, with fuzzed versions, sizes, kinds, names and
// property tables (strings and numbers; pointers stay valid as in a loaded library).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "plugin/descriptor.hpp"

namespace {
mp_status create(mp_host*, const mp_host_api*, const mp_config*, void**) { return MP_OK; }
void destroy(void*) {}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 16) {
        return 0;
    }
    size_t pos = 0;
    auto take = [&](size_t n) {
        uint64_t v = 0;
        for (size_t i = 0; i < n && pos < size; ++i) {
            v = (v << 8) | data[pos++];
        }
        return v;
    };
    // Strings are cut from the rest of the input at '\0' boundaries.
    std::vector<std::string> strings;
    mp_plugin p{};
    p.struct_size = static_cast<uint32_t>(take(2));
    p.abi_major = static_cast<uint16_t>(take(1) % 3);
    p.abi_minor = static_cast<uint16_t>(take(1) % 3);
    p.kind = static_cast<uint32_t>(take(1) % 6);
    int nprops = static_cast<int>(take(1) % 8);
    std::string rest(reinterpret_cast<const char*>(data) + pos, size - pos);
    size_t start = 0;
    while (start <= rest.size() && strings.size() < 64) {
        size_t end = rest.find('\0', start);
        if (end == std::string::npos) {
            end = rest.size();
        }
        strings.push_back(rest.substr(start, end - start));
        start = end + 1;
    }
    while (strings.size() < 4 + 3 * static_cast<size_t>(nprops)) {
        strings.emplace_back();
    }
    p.name = strings[0].c_str();
    p.version = strings[1].c_str();
    p.description = strings[2].c_str();
    std::vector<mp_property> props(static_cast<size_t>(nprops) + 1);
    for (int i = 0; i < nprops; ++i) {
        const std::string& meta = strings[3 + 3 * static_cast<size_t>(i)];
        mp_property& pr = props[static_cast<size_t>(i)];
        pr.name = strings[4 + 3 * static_cast<size_t>(i)].c_str();
        pr.default_value = strings[5 + 3 * static_cast<size_t>(i)].c_str();
        pr.type = meta.empty() ? 0 : static_cast<uint32_t>(meta[0] % 7);
        pr.min = meta.size() > 1 ? meta[1] : 0;
        pr.max = meta.size() > 2 ? meta[2] * 1000 : 0;
        pr.choices = meta.size() > 3 ? meta.c_str() + 3 : nullptr;
        if (pr.name[0] == '\0') {
            pr.name = "p";  // an empty name would end the table early; keep it going
        }
    }
    p.properties = props.data();
    p.create = (take(1) & 1) != 0 ? create : nullptr;
    p.destroy = destroy;
    mp_plugin out{};
    std::string problem = mp::host::checkDescriptor(&p, out);
    if (problem.empty() && (out.create == nullptr || !mp::host::validPluginName(out.name))) {
        __builtin_trap();  // accepted something it must refuse
    }
    return 0;
}
