// SPDX-License-Identifier: Apache-2.0
// A small thread-safe logger: one line per message on stderr, with time, level and source.
#pragma once

#include <mp/abi.h>

#include <string>
#include <string_view>

namespace mp::host {

/// Parses "trace|debug|info|warn|error"; returns MP_LOG_INFO for anything else.
int parseLogLevel(std::string_view name);
const char* logLevelName(int level);

void setLogLevel(int level);
int logLevel();
/// Writes one line: "2026-11-23T10:00:00.123Z WARN  source: message".
void log(int level, std::string_view source, std::string_view message);

}  // namespace mp::host
