// SPDX-License-Identifier: Apache-2.0
// The original Go Mysql Probe's cluster API shapes, for the cluster plugins: its callers get
// "OK" in plain text from join/leave/remove and a JSON array of {name, ip, gossip_port, meta}
// from listnodes; ours get JSON objects. A plugin's `api` property chooses the default and
// `?format=native|original` on a request overrides it. Header-only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mp/sdk.hpp"

namespace mp::original {

enum class Api { Native, Original };

/// The `api` property of a cluster plugin.
inline constexpr const char* kApiValues = "native|original";

inline std::optional<Api> parseApi(std::string_view s) {
    if (s == "native") {
        return Api::Native;
    }
    if (s == "original") {
        return Api::Original;
    }
    return std::nullopt;
}

/// The shape one request gets: `?format=` when given (throws HttpError 400 when it is neither
/// value), else the plugin's configured one.
inline Api requested(const mp::Host& host, const mp_http_request* req, Api configured) {
    std::optional<std::string> f = host.param(req, "format");
    if (!f) {
        return configured;
    }
    std::optional<Api> api = parseApi(*f);
    if (!api) {
        throw mp::HttpError(400, "format is native or original");
    }
    return *api;
}

/// One node as the original's listnodes shows it (its server/cluster.go Node and MetaData).
struct Node {
    std::string name;
    std::string ip;
    uint16_t gossipPort = 0;
    std::string role;  // master, standby, slave
    uint64_t epic = 0;
    std::string group;
    uint16_t serverPort = 0;
};

inline std::string nodesJson(const std::vector<Node>& nodes) {
    std::string out = "[";
    for (const Node& n : nodes) {
        out += (out.size() == 1 ? "" : ",") + std::string("{\"name\":") + jsonString(n.name) +
               ",\"ip\":" + jsonString(n.ip) + ",\"gossip_port\":" + std::to_string(n.gossipPort) +
               ",\"meta\":{\"role\":" + jsonString(n.role) + ",\"epic\":" + std::to_string(n.epic) +
               ",\"group\":" + jsonString(n.group) +
               ",\"server_port\":" + std::to_string(n.serverPort) + "}}";
    }
    return out + "]";
}

/// A cluster operation's success: "OK" (text/plain) for the original's callers, else `json`.
inline void replyDone(const mp::Host& host, mp_http_response* resp, Api api,
                      std::string_view json) {
    if (api == Api::Original) {
        host.reply(resp, 200, "text/plain; charset=utf-8", "OK");
    } else {
        host.replyJson(resp, 200, json);
    }
}

/// A refusal: the reason as plain text (as the original's http.Error) or {"error": why}. The
/// status stays ours (400, 404, 409...): the original answered 500 to everything.
inline void replyError(const mp::Host& host, mp_http_response* resp, Api api, int status,
                       const std::string& why) {
    if (api == Api::Original) {
        host.reply(resp, status, "text/plain; charset=utf-8", why + "\n");
    } else {
        host.replyJson(resp, status, errorJson(why));
    }
}

}  // namespace mp::original
