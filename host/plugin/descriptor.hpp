// SPDX-License-Identifier: Apache-2.0
// Checks a plugin descriptor before the host trusts any of it (also fuzzed).
#pragma once

#include <mp/abi.h>

#include <string>

namespace mp::host {

/// Bytes of mp_plugin that an ABI 1.0 plugin must provide (up to and including stream_close).
constexpr size_t kMinPluginSize = offsetof(mp_plugin, stream_close) + sizeof(void*);

/// Copies `raw` into `out` the OBS way (zero-filled, min of both sizes) and checks it.
/// Returns "" when acceptable, else the reason in one line. `raw` may be NULL.
std::string checkDescriptor(const mp_plugin* raw, mp_plugin& out);

/// True for names like "sink-websocket": [a-z0-9] words joined by '-', 1..64 chars.
bool validPluginName(const char* name);

}  // namespace mp::host
