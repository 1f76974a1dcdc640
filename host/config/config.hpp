// SPDX-License-Identifier: Apache-2.0
// The YAML file: host keys, the original Go probe's keys, and the `plugins:` section.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/values.hpp"
#include "server/auth.hpp"

namespace mp::host {

/// One plugin slot as the file (or the legacy keys) asks for it.
struct SlotConfig {
    std::string slot;                         // "capture", "decoder", "cluster", "sinks[0]"
    uint32_t kind = 0;                        // MP_KIND_*
    std::string plugin;                       // plugin name
    std::string keyPath;                      // "plugins.capture" or the legacy key that chose it
    YAML::Node node;                          // for positions in messages (may be undefined)
    std::map<std::string, Setting> settings;  // property -> value
    std::vector<std::string> records;         // sinks: record streams subscribed (patterns)
    bool reports = true;                      // sinks: receive the reports
};

/// Command-line overrides applied on top of the file.
struct Overrides {
    std::optional<std::string> readFile;  // -r FILE
    std::optional<std::string> ports;     // --port
    std::vector<std::string> pluginDirs;  // --plugin-dir
    std::optional<int> serverPort;        // --serverport
};

/// Bounds of the host's stream layer (`stream:` section).
struct StreamConfig {
    int64_t maxConnections = 65536;  // per worker
    int64_t maxBufferKb = 4096;      // memory held out of order per direction
    int64_t maxWorkerBufferMb = 64;  // the same, all connections of one worker
    int64_t idleTimeoutS = 300;      // a connection silent this long (stream time) is closed
    int64_t ringKb = 4096;           // queue between a capture thread and a worker
};

/// Limits of the host's HTTP server (`http:` section).
struct HttpConfig {
    int64_t maxConnections = 1024;
    int64_t maxConnectionsPerClient = 128;
    int64_t reservedConnections = 32;  // kept for the peer and admin roles
    int64_t headerTimeoutMs = 5000;
    int64_t keepaliveTimeoutMs = 15000;
    int64_t maxBodyKb = 1024;
    int64_t maxBufferedMb = 256;
};

/// The record buffer between producers and sinks (`records:` section).
struct RecordsConfig {
    int64_t maxBufferMb = 64;  // bytes of records held for sinks, all of them together
    int64_t drainMs = 3000;    // at stop, time given to the sinks to deliver what is held
};

/// TLS (`tls:` section): the server's certificate, and the CA that other nodes' are signed by.
struct TlsConfig {
    std::string certFile;  // PEM chain; with keyFile: the server speaks TLS only
    std::string keyFile;
    std::string caFile;  // set: this node dials other nodes with TLS and verifies them
};

/// The host's view of the whole file.
struct HostConfig {
    std::string file;
    bool slave = false;
    /// Serve the original probe's callers by default (`compat:`; auto: when the file has only
    /// the original's keys): sinks and clusters get `api: original` unless they set `api`.
    bool originalApi = false;
    std::string serverAddress = "0.0.0.0";
    int serverPort = 8667;
    int intervalS = 5;
    int workers = 1;
    std::string nodeName;
    std::string logLevel = "info";
    std::string stateDir;  // `statedir`; empty: the configuration file's folder
    StreamConfig stream;
    HttpConfig http;
    TlsConfig tls;
    RecordsConfig records;
    AuthConfig auth;  // `auth:` section (and the legacy cluster.token)
    std::vector<std::string> pluginDirs;
    std::vector<SlotConfig> slots;      // capture, decoder, cluster, sinks... (as present)
    std::vector<std::string> warnings;  // printed at start
};

/// The host's own property tables (also printed by --help).
const mp_property* hostProperties();

/// Reads and checks the file: YAML syntax, host keys, legacy keys, the plugins section.
/// Plugin properties are checked later against the loaded plugins (see validate()).
/// `file` may be empty: then only the overrides and defaults apply.
HostConfig loadConfig(const std::string& file, const Overrides& overrides);

/// Same, from YAML text (for tests and the fuzzer); `name` is used in messages.
HostConfig parseConfig(const std::string& text, const std::string& name,
                       const Overrides& overrides);

/// A record stream name ("binlog.rows": words of [a-z0-9_-] joined by '.', 1..64 bytes).
bool validStreamName(std::string_view name);
/// A subscription: a stream name, a name ending in ".*" (that prefix and below), or "*".
bool validStreamPattern(std::string_view pattern);
/// True when `stream` is matched by `pattern`.
bool streamMatches(std::string_view pattern, std::string_view stream);

/// MP_KIND_* from "capture" etc.; 0 when unknown.
uint32_t kindFromName(const std::string& name);
const char* kindName(uint32_t kind);

}  // namespace mp::host
