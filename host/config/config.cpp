// SPDX-License-Identifier: Apache-2.0
#include "config/config.hpp"

#include <Poco/Net/IPAddress.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>

namespace mp::host {

namespace {

// clang-format off
const mp_property kTop[] = {
    {"slave", MP_PROP_BOOL, 0, "false", "run as a slave: capture on this host and report to a master", 0, 0, nullptr},
    {"serverport", MP_PROP_INT, 0, "8667", "HTTP and websocket port of the host (0: any free port)", 0, 65535, nullptr},
    {"serveraddress", MP_PROP_STRING, 0, "0.0.0.0", "address the HTTP server binds to", 0, 0, nullptr},
    {"interval", MP_PROP_INT, 0, "5", "report interval in seconds", 1, 86400, nullptr},
    {"slowthresholdms", MP_PROP_INT, 0, nullptr, "slow query threshold in ms (decoder slow_threshold_ms)", 0, 86400000, nullptr},
    {"nodename", MP_PROP_STRING, 0, "", "name of this node in reports (default: hostname:serverport)", 0, 0, nullptr},
    {"loglevel", MP_PROP_STRING, 0, "info", "log level", 0, 0, "trace|debug|info|warn|error"},
    {"compat", MP_PROP_STRING, 0, "auto", "whose callers the node answers by default: original (the Go probe's formats on /collector and /cluster), native, or auto: original when the file has only the original's keys", 0, 0, "auto|original|native"},
    {"statedir", MP_PROP_STRING, 0, "", "folder where plugins keep their state (default: the configuration file's folder)", 0, 0, nullptr},
    {"cluster", MP_PROP_STRING, 0, nullptr, "section: cluster settings", 0, 0, nullptr},
    {"probe", MP_PROP_STRING, 0, nullptr, "section: capture settings", 0, 0, nullptr},
    {"pusher", MP_PROP_STRING, 0, nullptr, "section: report pusher", 0, 0, nullptr},
    {"watcher", MP_PROP_STRING, 0, nullptr, "section: the captured server's credentials (decoder server, server_user, server_password)", 0, 0, nullptr},
    {"websocket", MP_PROP_STRING, 0, nullptr, "section: websocket timings", 0, 0, nullptr},
    {"plugins", MP_PROP_STRING, 0, nullptr, "section: plugin choice and settings", 0, 0, nullptr},
    {"stream", MP_PROP_STRING, 0, nullptr, "section: bounds of the TCP stream layer", 0, 0, nullptr},
    {"auth", MP_PROP_STRING, 0, nullptr, "section: access tokens and roles (docs/security.md)", 0, 0, nullptr},
    {"http", MP_PROP_STRING, 0, nullptr, "section: limits of the HTTP server", 0, 0, nullptr},
    {"tls", MP_PROP_STRING, 0, nullptr, "section: TLS certificates (docs/security.md)", 0, 0, nullptr},
    {"records", MP_PROP_STRING, 0, nullptr, "section: the record buffer between producers and sinks", 0, 0, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

// Every key the original Go probe reads (its config/config.go), by section ("" for top level).
const std::map<std::string, std::set<std::string>> kOriginalKeys = {
    {"",
     {"slave", "serverport", "interval", "slowthresholdms", "cluster", "probe", "pusher", "watcher",
      "websocket"}},
    {"cluster", {"gossip", "group", "port"}},
    {"probe", {"device", "port", "snappylength", "workers"}},
    {"pusher", {"servers", "path", "preconnect"}},
    {"watcher", {"uname", "password", "passward", "address", "dbname"}},
    {"websocket",
     {"connecttimeoutms", "writetimeoutms", "pingtimeouts", "reconnectperiods", "maxmessagesize"}},
};

// True when every key of the file is one the original probe reads.
bool onlyOriginalKeys(const YAML::Node& root) {
    for (const auto& kv : root) {
        const std::string key = kv.first.Scalar();
        if (kOriginalKeys.at("").count(key) == 0) {
            return false;
        }
        auto section = kOriginalKeys.find(key);
        if (section != kOriginalKeys.end() && kv.second.IsMap()) {
            for (const auto& inner : kv.second) {
                if (section->second.count(inner.first.Scalar()) == 0) {
                    return false;
                }
            }
        }
    }
    return true;
}

const std::set<std::string> kSections = {"cluster",   "probe",   "pusher", "watcher",
                                         "websocket", "plugins", "stream", "auth",
                                         "http",      "tls",     "records"};

// A key of the original probe that a plugin property takes over.
struct LegacyKey {
    const char* section;  // "" for top-level
    const char* key;
    uint32_t type;
    int64_t min, max;
    uint32_t kind;     // slot kind it maps into; 0: host-owned or ignored
    const char* prop;  // property name in the plugin; nullptr: host-owned or ignored
};

// clang-format off
const LegacyKey kLegacy[] = {
    {"", "slowthresholdms", MP_PROP_INT, 0, 86400000, MP_KIND_DECODER, "slow_threshold_ms"},
    {"", "slave", MP_PROP_BOOL, 0, 0, MP_KIND_CLUSTER, "slave"},
    {"cluster", "gossip", MP_PROP_BOOL, 0, 0, 0, nullptr},
    {"cluster", "group", MP_PROP_STRING, 0, 0, MP_KIND_CLUSTER, "group"},
    {"cluster", "port", MP_PROP_INT, 0, 65535, MP_KIND_CLUSTER, "port"},
    {"cluster", "token", MP_PROP_STRING, 0, 0, 0, nullptr},  // an admin token of `auth:`
    {"cluster", "keys", MP_PROP_STRING_LIST, 0, 0, MP_KIND_CLUSTER, "keys"},
    {"probe", "device", MP_PROP_STRING_LIST, 0, 0, MP_KIND_CAPTURE, "device"},
    {"probe", "port", MP_PROP_STRING_LIST, 0, 0, MP_KIND_CAPTURE, "port"},
    {"probe", "snappylength", MP_PROP_INT, 0, 262144, MP_KIND_CAPTURE, "snaplen"},
    {"probe", "workers", MP_PROP_INT, 1, 64, 0, nullptr},
    {"probe", "file", MP_PROP_STRING, 0, 0, MP_KIND_CAPTURE, "file"},
    {"probe", "filter", MP_PROP_STRING, 0, 0, MP_KIND_CAPTURE, "filter"},
    {"probe", "loop", MP_PROP_BOOL, 0, 0, MP_KIND_CAPTURE, "loop"},
    {"pusher", "servers", MP_PROP_STRING_LIST, 0, 0, MP_KIND_SINK, "pusher_servers"},
    {"pusher", "path", MP_PROP_STRING, 0, 0, MP_KIND_SINK, "pusher_path"},
    {"pusher", "preconnect", MP_PROP_BOOL, 0, 0, MP_KIND_SINK, "pusher_preconnect"},
    {"websocket", "connecttimeoutms", MP_PROP_INT, 1, 3600000, MP_KIND_SINK, "connect_timeout_ms"},
    {"websocket", "writetimeoutms", MP_PROP_INT, 1, 3600000, MP_KIND_SINK, "write_timeout_ms"},
    {"websocket", "pingtimeouts", MP_PROP_INT, 1, 86400, MP_KIND_SINK, "ping_timeout_s"},
    {"websocket", "reconnectperiods", MP_PROP_INT, 1, 86400, MP_KIND_SINK, "reconnect_period_s"},
    {"websocket", "maxmessagesize", MP_PROP_INT, 1, 1048576, MP_KIND_SINK, "max_message_kb"},
    // The host's stream layer (new).
    {"stream", "max_connections", MP_PROP_INT, 1, 10000000, 0, nullptr},
    {"stream", "max_buffer_kb", MP_PROP_INT, 4, 1048576, 0, nullptr},
    {"stream", "max_worker_buffer_mb", MP_PROP_INT, 1, 1048576, 0, nullptr},
    {"stream", "idle_timeout_s", MP_PROP_INT, 1, 86400, 0, nullptr},
    {"stream", "ring_kb", MP_PROP_INT, 64, 1048576, 0, nullptr},
    // Records between producers and sinks (new).
    {"records", "max_buffer_mb", MP_PROP_INT, 1, 1048576, 0, nullptr},
    {"records", "drain_ms", MP_PROP_INT, 0, 60000, 0, nullptr},
    // TLS (new): files are checked when the server is made (--check too).
    {"tls", "cert_file", MP_PROP_STRING, 0, 0, 0, nullptr},
    {"tls", "key_file", MP_PROP_STRING, 0, 0, 0, nullptr},
    {"tls", "ca_file", MP_PROP_STRING, 0, 0, 0, nullptr},
    // The host's HTTP server (new).
    {"http", "max_connections", MP_PROP_INT, 16, 1000000, 0, nullptr},
    {"http", "max_connections_per_client", MP_PROP_INT, 1, 1000000, 0, nullptr},
    {"http", "reserved_connections", MP_PROP_INT, 0, 100000, 0, nullptr},
    {"http", "header_timeout_ms", MP_PROP_INT, 100, 600000, 0, nullptr},
    {"http", "keepalive_timeout_ms", MP_PROP_INT, 100, 3600000, 0, nullptr},
    {"http", "max_body_kb", MP_PROP_INT, 1, 1048576, 0, nullptr},
    {"http", "max_buffered_mb", MP_PROP_INT, 1, 1048576, 0, nullptr},
    // The original's SHOW PROCESSLIST watcher: its credentials are the decoder's `server`
    // credentials (coverage against the server's counters; the sessions open before the
    // capture); dbname is not needed (user and schema come from the wire).
    {"watcher", "uname", MP_PROP_STRING, 0, 0, MP_KIND_DECODER, "server_user"},
    {"watcher", "password", MP_PROP_STRING, 0, 0, MP_KIND_DECODER, "server_password"},
    {"watcher", "passward", MP_PROP_STRING, 0, 0, MP_KIND_DECODER, "server_password"},
    {"watcher", "address", MP_PROP_STRING, 0, 0, MP_KIND_DECODER, "server"},
    {"watcher", "dbname", MP_PROP_STRING, 0, 0, 0, nullptr},
};
// clang-format on

mp_property legacyProp(const LegacyKey& k) {
    return mp_property{k.key, k.type, 0, nullptr, nullptr, k.min, k.max, nullptr};
}

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

// Reads a mapping's entries as Settings, with duplicate-key detection.
std::map<std::string, Setting> entries(const std::string& file, const YAML::Node& map,
                                       const std::string& prefix) {
    std::map<std::string, Setting> out;
    for (const auto& kv : map) {
        if (!kv.first.IsScalar()) {
            throw ConfigError(where(file, kv.first) + prefix + ": keys must be scalars");
        }
        const std::string& key = kv.first.Scalar();
        if (out.count(key) != 0) {
            throw ConfigError(where(file, kv.first) + join(prefix, key) + ": duplicate key");
        }
        out[key] = Setting{kv.second, join(prefix, key)};
    }
    return out;
}

void requireMap(const std::string& file, const YAML::Node& n, const std::string& path) {
    if (!n.IsMap()) {
        throw ConfigError(where(file, n) + path + ": expected a mapping");
    }
}

// Parses one slot value: "name", "none", or {plugin: name, config: {...}} (sinks and the
// cluster also take `records:`, the record streams they subscribe to; sinks take `reports:`).
std::optional<SlotConfig> parseSlot(const std::string& file, const YAML::Node& n,
                                    const std::string& path, uint32_t kind,
                                    const std::string& slot) {
    SlotConfig s;
    s.slot = slot;
    s.kind = kind;
    s.keyPath = path;
    s.node = n;
    if (n.IsNull()) {
        return std::nullopt;
    }
    if (n.IsScalar()) {
        if (n.Scalar() == "none") {
            return std::nullopt;
        }
        s.plugin = n.Scalar();
        return s;
    }
    requireMap(file, n, path);
    for (auto& [key, setting] : entries(file, n, path)) {
        if (key == "plugin") {
            if (!setting.node.IsScalar() || setting.node.Scalar().empty()) {
                throw ConfigError(where(file, setting.node) + setting.keyPath +
                                  ": expected a plugin name");
            }
            s.plugin = setting.node.Scalar();
        } else if (key == "config") {
            if (setting.node.IsNull()) {
                continue;
            }
            requireMap(file, setting.node, setting.keyPath);
            s.settings = entries(file, setting.node, setting.keyPath);
        } else if ((kind == MP_KIND_SINK || kind == MP_KIND_CLUSTER) && key == "records") {
            mp_property p{"records", MP_PROP_STRING_LIST, 0, nullptr, nullptr, 0, 0, nullptr};
            s.records =
                setting.node.IsNull() ? std::vector<std::string>{} : convert(file, setting, p).list;
            for (const auto& pattern : s.records) {
                if (!validStreamPattern(pattern)) {
                    throw ConfigError(where(file, setting.node) + setting.keyPath + ": '" +
                                      pattern +
                                      "' is not a stream name or pattern (words of [a-z0-9_-] "
                                      "joined by '.', optionally ending in '.*'; or '*')");
                }
            }
        } else if (kind == MP_KIND_SINK && key == "reports") {
            mp_property p{"reports", MP_PROP_BOOL, 0, nullptr, nullptr, 0, 0, nullptr};
            s.reports = convert(file, setting, p).b;
        } else {
            throw ConfigError(where(file, setting.node) + setting.keyPath +
                              (kind == MP_KIND_SINK ? ": unknown key (expected 'plugin', 'config', "
                                                      "'records' or 'reports')"
                               : kind == MP_KIND_CLUSTER
                                   ? ": unknown key (expected 'plugin', 'config' or 'records')"
                                   : ": unknown key (expected 'plugin' or 'config')"));
        }
    }
    if (s.plugin.empty()) {
        throw ConfigError(where(file, n) + path + ": 'plugin' is missing");
    }
    if (s.plugin == "none") {
        return std::nullopt;
    }
    return s;
}

// A token's secret: printable ASCII without spaces (it travels in an HTTP header), 16 to 4096
// bytes. `what` names it in messages; the secret itself never appears in one.
std::string checkSecret(const std::string& at, const std::string& what, std::string secret) {
    if (secret.size() < 16 || secret.size() > 4096) {
        throw ConfigError(at + what + ": a token must be 16 to 4096 characters long (" +
                          std::to_string(secret.size()) + " given)");
    }
    for (char c : secret) {
        if (c <= ' ' || c > '~') {
            throw ConfigError(at + what +
                              ": a token is printable ASCII without spaces (it is sent in a "
                              "header)");
        }
    }
    return secret;
}

// The first line of a token file; warns when others may read it.
std::string readTokenFile(const std::string& at, const std::string& what, const std::string& path,
                          std::vector<std::string>& warnings) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(at + what + ": cannot read the token file " + path);
    }
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        warnings.push_back(what + ": the token file " + path +
                           " can be read by other users (chmod 600 it)");
    }
    return checkSecret(at, what, line);
}

void parseAuth(const std::string& file, const Setting& section, HostConfig& cfg) {
    requireMap(file, section.node, "auth");
    bool clusterTokenGiven = false;
    for (auto& [key, s] : entries(file, section.node, "auth")) {
        std::string at = where(file, s.node);
        if (key == "tokens") {
            if (s.node.IsNull()) {
                continue;
            }
            if (!s.node.IsSequence()) {
                throw ConfigError(at + s.keyPath + ": expected a list of {name, role, token|file}");
            }
            for (size_t i = 0; i < s.node.size(); ++i) {
                const YAML::Node& t = s.node[i];
                std::string path = s.keyPath + "[" + std::to_string(i) + "]";
                std::string tat = where(file, t);
                requireMap(file, t, path);
                TokenConfig tc;
                std::string secret;
                std::string fromFile;
                for (auto& [tk, ts] : entries(file, t, path)) {
                    std::string kat = where(file, ts.node);
                    if (!ts.node.IsScalar()) {
                        throw ConfigError(kat + ts.keyPath + ": expected a string");
                    }
                    if (tk == "name") {
                        tc.name = ts.node.Scalar();
                    } else if (tk == "role") {
                        tc.role = roleFromName(ts.node.Scalar());
                        if (tc.role < MP_ROLE_READ) {
                            throw ConfigError(kat + ts.keyPath + ": '" + ts.node.Scalar() +
                                              "' is not one of read, peer, admin");
                        }
                    } else if (tk == "token") {
                        secret = checkSecret(kat, ts.keyPath, ts.node.Scalar());
                    } else if (tk == "file") {
                        fromFile = ts.node.Scalar();
                        secret = readTokenFile(kat, ts.keyPath, fromFile, cfg.warnings);
                    } else {
                        throw ConfigError(kat + ts.keyPath +
                                          ": unknown key (known: name, role, token, file)");
                    }
                }
                if (tc.name.empty() || tc.name.size() > 64 ||
                    tc.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_.-") != std::string::npos) {
                    throw ConfigError(tat + path +
                                      ".name: give each token a name of letters, digits, _ . - "
                                      "(1 to 64): logs say who did what by it");
                }
                if (tc.role == 0) {
                    throw ConfigError(tat + path + ".role: missing (read, peer or admin)");
                }
                if (secret.empty()) {
                    throw ConfigError(tat + path + ": give the secret as token: or file:");
                }
                if (t["token"] && !fromFile.empty()) {
                    throw ConfigError(tat + path + ": token and file: give one of them");
                }
                for (const auto& other : cfg.auth.tokens) {
                    if (other.name == tc.name) {
                        throw ConfigError(tat + path + ".name: '" + tc.name + "' is used twice");
                    }
                }
                tc.secret = std::move(secret);
                cfg.auth.tokens.push_back(std::move(tc));
            }
        } else if (key == "cluster_token") {
            if (!s.node.IsScalar()) {
                throw ConfigError(at + s.keyPath + ": expected a token name");
            }
            cfg.auth.clusterToken = s.node.Scalar();
            clusterTokenGiven = true;
        } else if (key == "anonymous") {
            uint32_t r = s.node.IsScalar() ? roleFromName(s.node.Scalar()) : 0;
            if (r == 0 || r == MP_ROLE_ADMIN) {
                throw ConfigError(at + s.keyPath + ": expected anyone, read or peer");
            }
            cfg.auth.anonymousRole = r;
        } else if (key == "query_token") {
            mp_property p{"query_token", MP_PROP_BOOL, 0, nullptr, nullptr, 0, 0, nullptr};
            cfg.auth.queryTokenOnUpgrade = convert(file, s, p).b;
        } else {
            throw ConfigError(at + s.keyPath +
                              ": unknown key (known: anonymous, cluster_token, query_token, "
                              "tokens)");
        }
    }
    if (clusterTokenGiven) {
        const TokenConfig* found = nullptr;
        for (const auto& t : cfg.auth.tokens) {
            found = t.name == cfg.auth.clusterToken ? &t : found;
        }
        if (found == nullptr || found->role < MP_ROLE_PEER) {
            throw ConfigError(where(file, section.node["cluster_token"]) +
                              "auth.cluster_token: expected the name of a token of role peer or "
                              "admin in auth.tokens");
        }
    }
}

}  // namespace

const mp_property* hostProperties() { return kTop; }

uint32_t kindFromName(const std::string& name) {
    if (name == "capture") {
        return MP_KIND_CAPTURE;
    }
    if (name == "decoder") {
        return MP_KIND_DECODER;
    }
    if (name == "cluster") {
        return MP_KIND_CLUSTER;
    }
    if (name == "sink" || name == "sinks") {
        return MP_KIND_SINK;
    }
    if (name == "source" || name == "sources") {
        return MP_KIND_SOURCE;
    }
    return 0;
}

const char* kindName(uint32_t kind) {
    switch (kind) {
        case MP_KIND_CAPTURE:
            return "capture";
        case MP_KIND_DECODER:
            return "decoder";
        case MP_KIND_CLUSTER:
            return "cluster";
        case MP_KIND_SINK:
            return "sink";
        case MP_KIND_SOURCE:
            return "source";
        default:
            return "unknown";
    }
}

namespace {
// The first line (from 1) whose indentation holds a tab character; 0 when none does.
size_t firstTabIndentedLine(std::string_view text) {
    size_t line = 1;
    bool indent = true;  // still in the line's leading whitespace
    for (char c : text) {
        if (c == '\n') {
            ++line;
            indent = true;
        } else if (indent && c == '\t') {
            return line;
        } else if (c != ' ') {
            indent = false;
        }
    }
    return 0;
}

HostConfig parseConfigImpl(const std::string& text, const std::string& name, const Overrides& ov) {
    HostConfig cfg;
    cfg.file = name;
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        // The original probe's documented sample is indented with tabs: say so, by line.
        if (size_t line = firstTabIndentedLine(text); line != 0) {
            throw ConfigError(name + ":" + std::to_string(line) +
                              ": tab characters are not allowed for indentation in YAML, line " +
                              std::to_string(line) + ": indent with spaces");
        }
        throw ConfigError(name + ":" + std::to_string(e.mark.line + 1) +
                          ": YAML syntax error: " + e.msg);
    }
    if (root.IsNull() || !root.IsDefined()) {
        root = YAML::Node(YAML::NodeType::Map);
    }
    requireMap(name, root, "(top level)");

    std::map<std::string, Setting> top = entries(name, root, "");
    // Host-owned top-level scalars.
    std::map<std::string, Setting> scalars;
    std::map<std::string, Setting> sections;
    for (auto& [key, setting] : top) {
        (kSections.count(key) != 0 ? sections : scalars)[key] = setting;
    }
    // Unknown top-level keys are reported by validate() against kTop (sections excluded there).
    std::vector<mp_property> scalarProps;
    for (size_t i = 0; kTop[i].name != nullptr; ++i) {
        if (kSections.count(kTop[i].name) == 0) {
            scalarProps.push_back(kTop[i]);
        }
    }
    scalarProps.push_back(mp_property{});
    auto values = validate(name, "the top level", root, scalars, scalarProps.data());
    cfg.slave = values["slave"].b;
    cfg.serverPort = static_cast<int>(values["serverport"].i);
    cfg.serverAddress = values["serveraddress"].s;
    {
        Poco::Net::IPAddress ip;
        if (!Poco::Net::IPAddress::tryParse(cfg.serverAddress, ip)) {
            throw ConfigError(where(name, scalars["serveraddress"].node) + "serveraddress: '" +
                              cfg.serverAddress +
                              "' is not an IPv4 or IPv6 address (0.0.0.0: every interface)");
        }
    }
    cfg.intervalS = static_cast<int>(values["interval"].i);
    cfg.nodeName = values["nodename"].s;
    cfg.logLevel = values["loglevel"].s;
    cfg.stateDir = values["statedir"].s;
    cfg.originalApi = values["compat"].s == "original" ||
                      (values["compat"].s == "auto" && root.size() != 0 && onlyOriginalKeys(root));

    // Legacy sections: check every key against its legacy table and collect what plugins take.
    struct Pending {
        Setting setting;
        uint32_t kind;
        const char* prop;
    };
    std::vector<Pending> pending;
    bool gossip = false;
    bool haveCaptureInput = false;  // probe.file or -r
    bool haveDevice = false;        // probe.device
    std::optional<Setting> legacyToken;
    for (const auto& k : kLegacy) {
        if (std::string(k.section).empty() && scalars.count(k.key) != 0 &&
            !scalars[k.key].node.IsNull() && k.prop != nullptr) {
            pending.push_back({scalars[k.key], k.kind, k.prop});
        }
    }
    for (const auto& [section, setting] : sections) {
        if (section == "plugins" || section == "auth" || setting.node.IsNull()) {
            continue;
        }
        requireMap(name, setting.node, section);
        for (auto& [key, s] : entries(name, setting.node, section)) {
            const LegacyKey* found = nullptr;
            std::string known;
            for (const auto& k : kLegacy) {
                if (section == k.section) {
                    known += (known.empty() ? "" : ", ") + std::string(k.key);
                    if (key == k.key) {
                        found = &k;
                    }
                }
            }
            if (found == nullptr) {
                throw ConfigError(where(name, s.node) + s.keyPath +
                                  ": unknown key (known: " + known + ")");
            }
            if (s.node.IsNull()) {
                continue;
            }
            Value v = convert(name, s, legacyProp(*found));
            if (section == "cluster" && key == "gossip") {
                gossip = v.b;
            } else if (section == "cluster" && key == "token") {
                legacyToken = s;  // becomes an admin token once `auth:` is read
            } else if (section == "probe" && key == "workers") {
                cfg.workers = static_cast<int>(v.i);
            } else if (section == "stream") {
                int64_t* target = key == "max_connections"        ? &cfg.stream.maxConnections
                                  : key == "max_buffer_kb"        ? &cfg.stream.maxBufferKb
                                  : key == "max_worker_buffer_mb" ? &cfg.stream.maxWorkerBufferMb
                                  : key == "idle_timeout_s"       ? &cfg.stream.idleTimeoutS
                                                                  : &cfg.stream.ringKb;
                *target = v.i;
            } else if (section == "records") {
                (key == "max_buffer_mb" ? cfg.records.maxBufferMb : cfg.records.drainMs) = v.i;
            } else if (section == "tls") {
                (key == "cert_file"  ? cfg.tls.certFile
                 : key == "key_file" ? cfg.tls.keyFile
                                     : cfg.tls.caFile) = v.s;
            } else if (section == "http") {
                int64_t* target = key == "max_connections" ? &cfg.http.maxConnections
                                  : key == "max_connections_per_client"
                                      ? &cfg.http.maxConnectionsPerClient
                                  : key == "reserved_connections" ? &cfg.http.reservedConnections
                                  : key == "header_timeout_ms"    ? &cfg.http.headerTimeoutMs
                                  : key == "keepalive_timeout_ms" ? &cfg.http.keepaliveTimeoutMs
                                  : key == "max_body_kb"          ? &cfg.http.maxBodyKb
                                                                  : &cfg.http.maxBufferedMb;
                *target = v.i;
            } else if (section == "watcher" && key == "dbname") {
                cfg.warnings.push_back(s.keyPath +
                                       " is accepted for compatibility and not used: user and "
                                       "schema come from the wire");
            } else {
                if (section == "probe" && (key == "device" || key == "file") &&
                    (!v.s.empty() || !v.list.empty())) {
                    (key == "device" ? haveDevice : haveCaptureInput) = true;
                }
                pending.push_back({s, found->kind, found->prop});
            }
        }
    }

    if (cfg.tls.certFile.empty() != cfg.tls.keyFile.empty()) {
        throw ConfigError(where(name, sections["tls"].node) +
                          "tls: cert_file and key_file go together");
    }
    // Access: the auth section, and cluster.token as one admin token that this node also
    // presents to the other nodes of its cluster.
    if (sections.count("auth") != 0 && !sections["auth"].node.IsNull()) {
        parseAuth(name, sections["auth"], cfg);
    }
    if (legacyToken && !legacyToken->node.Scalar().empty()) {
        std::string at = where(name, legacyToken->node);
        for (const auto& t : cfg.auth.tokens) {
            if (t.name == "cluster") {
                throw ConfigError(at +
                                  "cluster.token: auth.tokens already has a token named "
                                  "'cluster'; give the cluster's token once");
            }
        }
        cfg.auth.tokens.push_back(
            TokenConfig{"cluster", MP_ROLE_ADMIN,
                        checkSecret(at, "cluster.token", legacyToken->node.Scalar())});
        if (cfg.auth.clusterToken.empty()) {
            cfg.auth.clusterToken = "cluster";
        }
    }

    // Command-line overrides become settings too (they win over the file).
    std::vector<Pending> forced;
    if (ov.readFile) {
        YAML::Node n(*ov.readFile);
        forced.push_back({Setting{n, "-r"}, MP_KIND_CAPTURE, "file"});
        haveCaptureInput = true;
    }
    if (ov.ports) {
        YAML::Node n(*ov.ports);
        forced.push_back({Setting{n, "--port"}, MP_KIND_CAPTURE, "port"});
    }
    if (ov.serverPort) {
        cfg.serverPort = *ov.serverPort;
    }

    // The plugins section.
    std::map<std::string, SlotConfig> explicitSlots;
    std::vector<SlotConfig> sinks;
    std::vector<SlotConfig> sources;
    std::vector<SlotConfig> decoders;  // more decoders, each fed every stream beside `decoder`
    bool sinksGiven = false;
    std::set<std::string> slotsGiven;
    if (sections.count("plugins") != 0 && !sections["plugins"].node.IsNull()) {
        const Setting& ps = sections["plugins"];
        requireMap(name, ps.node, "plugins");
        for (auto& [key, s] : entries(name, ps.node, "plugins")) {
            if (key == "directories") {
                mp_property p{"directories", MP_PROP_STRING_LIST, 0, nullptr, nullptr, 0, 0,
                              nullptr};
                if (!s.node.IsNull()) {
                    cfg.pluginDirs = convert(name, s, p).list;
                }
            } else if (key == "sources" || key == "decoders") {
                if (s.node.IsNull()) {
                    continue;
                }
                if (!s.node.IsSequence()) {
                    throw ConfigError(where(name, s.node) + s.keyPath + ": expected a list");
                }
                bool src = key == "sources";
                for (size_t i = 0; i < s.node.size(); ++i) {
                    std::string slot = key + "[" + std::to_string(i) + "]";
                    auto sc = parseSlot(name, s.node[i], "plugins." + slot,
                                        src ? MP_KIND_SOURCE : MP_KIND_DECODER, slot);
                    if (sc) {
                        (src ? sources : decoders).push_back(*sc);
                    }
                }
            } else if (key == "sinks") {
                sinksGiven = true;
                if (s.node.IsNull()) {
                    continue;
                }
                if (!s.node.IsSequence()) {
                    throw ConfigError(where(name, s.node) + s.keyPath + ": expected a list");
                }
                for (size_t i = 0; i < s.node.size(); ++i) {
                    std::string slot = "sinks[" + std::to_string(i) + "]";
                    auto sc = parseSlot(name, s.node[i], "plugins." + slot, MP_KIND_SINK, slot);
                    if (sc) {
                        sinks.push_back(*sc);
                    }
                }
            } else if (key == "capture" || key == "decoder" || key == "cluster") {
                slotsGiven.insert(key);
                auto sc = parseSlot(name, s.node, s.keyPath, kindFromName(key), key);
                if (sc) {
                    explicitSlots[key] = *sc;
                }
            } else {
                throw ConfigError(where(name, s.node) + s.keyPath +
                                  ": unknown key (known: capture, cluster, decoder, decoders, "
                                  "directories, sinks, sources)");
            }
        }
    }

    // Defaults for slots the plugins section does not mention.
    auto implicitSlot = [&](const std::string& slot, uint32_t kind, const std::string& plugin,
                            const std::string& why) {
        SlotConfig s;
        s.slot = slot;
        s.kind = kind;
        s.plugin = plugin;
        s.keyPath = why;
        return s;
    };
    // The plugin of each kind that a slot the file does not fill gets (the original probe's
    // `cluster.gossip: true` asks for the gossip cluster instead of the static one).
    auto defaultPlugin = [&](uint32_t kind) -> std::string {
        switch (kind) {
            case MP_KIND_CAPTURE:
                return "capture-pcap";
            case MP_KIND_DECODER:
                return "decoder-mysql";
            case MP_KIND_CLUSTER:
                return gossip ? "cluster-gossip" : "cluster-static";
            default:
                return "sink-websocket";
        }
    };
    bool offlineOnly = ov.readFile.has_value() && name == "(command line)";
    // The original's `probe:` section is "slave only": a cluster's master given the slaves'
    // shared file does not capture. A node without a cluster (plugins.cluster: none) does.
    const bool clusterMaster =
        !cfg.slave && !offlineOnly &&
        (slotsGiven.count("cluster") == 0 || explicitSlots.count("cluster") != 0);
    if (haveDevice && clusterMaster && !haveCaptureInput && slotsGiven.count("capture") == 0) {
        cfg.warnings.push_back(
            "probe.device is not used: this node is a master (slave: false) and the probe "
            "section is for slaves, as in the original; set slave: true to capture here");
    } else if (haveDevice) {
        haveCaptureInput = true;
    }
    if (slotsGiven.count("capture") == 0 && (haveCaptureInput || cfg.slave)) {
        if (!haveCaptureInput) {
            throw ConfigError(
                where(name, scalars.count("slave") ? scalars["slave"].node : YAML::Node()) +
                "slave: a slave captures traffic: set probe.device (or probe.file)");
        }
        explicitSlots["capture"] =
            implicitSlot("capture", MP_KIND_CAPTURE, defaultPlugin(MP_KIND_CAPTURE),
                         "probe.device / probe.file");
    }
    if (slotsGiven.count("decoder") == 0 && explicitSlots.count("capture") != 0) {
        explicitSlots["decoder"] = implicitSlot(
            "decoder", MP_KIND_DECODER, defaultPlugin(MP_KIND_DECODER), "(default decoder)");
    }
    if (slotsGiven.count("cluster") == 0 && !offlineOnly) {
        explicitSlots["cluster"] = implicitSlot("cluster", MP_KIND_CLUSTER,
                                                defaultPlugin(MP_KIND_CLUSTER), "cluster.gossip");
    }
    if (!sinksGiven && !offlineOnly) {
        sinks.push_back(
            implicitSlot("sinks[0]", MP_KIND_SINK, defaultPlugin(MP_KIND_SINK), "(default sink)"));
        // The web console at `/` (read role for its data, as /collector): on by default, so
        // that a node shows something to a person with a browser.
        sinks.push_back(implicitSlot("sinks[1]", MP_KIND_SINK, "console-web", "(default console)"));
    }

    for (const char* slot : {"capture", "decoder", "cluster"}) {
        if (explicitSlots.count(slot) != 0) {
            cfg.slots.push_back(explicitSlots[slot]);
        }
        if (std::string(slot) == "decoder") {
            for (auto& s : decoders) {
                cfg.slots.push_back(s);
            }
        }
    }
    for (auto& s : sinks) {
        cfg.slots.push_back(s);
    }
    for (auto& s : sources) {
        cfg.slots.push_back(s);
    }

    // Hand the legacy keys to the slots of their kind; the plugin's property table decides
    // (later, in validate) whether it takes them. Record them as "legacy" settings.
    for (auto& s : cfg.slots) {
        for (const auto& p : pending) {
            if (p.kind != s.kind) {
                continue;
            }
            std::string target = p.prop;
            auto it = s.settings.find(target);
            if (it != s.settings.end()) {
                throw ConfigError(where(name, it->second.node) + it->second.keyPath +
                                  ": also set by " + p.setting.keyPath + " (line " +
                                  std::to_string(p.setting.node.Mark().line + 1) +
                                  "); set it once");
            }
            Setting legacy = p.setting;
            legacy.keyPath = "legacy:" + legacy.keyPath;  // marks "may be ignored"
            s.settings[target] = legacy;
        }
        for (const auto& p : forced) {
            if (p.kind == s.kind) {
                s.settings[p.prop] = p.setting;
            }
        }
        // The original's callers: sinks and clusters that know its formats answer in them.
        if (cfg.originalApi && (s.kind == MP_KIND_SINK || s.kind == MP_KIND_CLUSTER) &&
            s.settings.count("api") == 0) {
            s.settings["api"] = Setting{YAML::Node("original"), "legacy:compat"};
        }
    }
    for (const auto& d : ov.pluginDirs) {
        cfg.pluginDirs.push_back(d);
    }
    return cfg;
}

}  // namespace

HostConfig parseConfig(const std::string& text, const std::string& name, const Overrides& ov) {
    try {
        return parseConfigImpl(text, name, ov);
    } catch (const YAML::Exception& e) {
        // Anything yaml-cpp raises past the initial parse is still the file's fault.
        throw ConfigError(name + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
}

HostConfig loadConfig(const std::string& file, const Overrides& ov) {
    if (file.empty()) {
        return parseConfig("", "(command line)", ov);
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw ConfigError(file + ": cannot open the configuration file");
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    if (ss.str().size() > 4 * 1024 * 1024) {
        throw ConfigError(file + ": the configuration file is larger than 4 MiB");
    }
    return parseConfig(ss.str(), file, ov);
}

bool validStreamName(std::string_view name) {
    if (name.empty() || name.size() > 64 || name.front() == '.' || name.back() == '.') {
        return false;
    }
    for (size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool word = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!word && !(c == '.' && name[i + 1] != '.')) {
            return false;
        }
    }
    return true;
}

bool validStreamPattern(std::string_view pattern) {
    if (pattern == "*") {
        return true;
    }
    if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == ".*") {
        return validStreamName(pattern.substr(0, pattern.size() - 2));
    }
    return validStreamName(pattern);
}

bool streamMatches(std::string_view pattern, std::string_view stream) {
    if (pattern == "*") {
        return true;
    }
    if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == ".*") {
        std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // "binlog."
        return stream.substr(0, prefix.size()) == prefix && stream.size() > prefix.size();
    }
    return pattern == stream;
}

}  // namespace mp::host
