// SPDX-License-Identifier: Apache-2.0
// The host's own routes: /health (anyone), /metrics (read), /config/update (admin, POST).
#include <charconv>
#include <mp/sdk.hpp>
#include <sstream>

#include "app/runtime.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "plugin/descriptor.hpp"

namespace mp::host {

std::string Runtime::healthJson() const {
    std::ostringstream out;
    out << "{\"status\":\"ok\",\"version\":" << mp::jsonString(MP_HOST_VERSION)
        << ",\"node\":" << mp::jsonString(nodeName_)
        << ",\"uptime_s\":" << (wallClockNs() - startedNs_) / 1000000000ULL
        << ",\"interval_ms\":" << intervalMs_.load() << ",\"plugins\":[";
    bool first = true;
    for (const auto& inst : instances_) {
        out << (first ? "" : ",") << "{\"slot\":" << mp::jsonString(inst->host->slot)
            << ",\"name\":" << mp::jsonString(inst->host->name)
            << ",\"kind\":" << mp::jsonString(kindName(inst->host->kind))
            << ",\"version\":" << mp::jsonString(inst->plugin->desc.version)
            << ",\"running\":" << (inst->host->running ? "true" : "false") << "}";
        first = false;
    }
    out << "]}";
    return out.str();
}

void Runtime::addBuiltinRoutes() {
    RouteSpec health;
    health.role = MP_ROLE_ANYONE;
    health.fn = [this](const mp_http_request&, mp_http_response& resp) {
        resp.status = 200;
        resp.contentType = "application/json";
        resp.body = healthJson();
    };
    http_->addRoute("/health", std::move(health));
    RouteSpec metrics;
    metrics.role = MP_ROLE_READ;
    metrics.fn = [this](const mp_http_request&, mp_http_response& resp) {
        resp.status = 200;
        resp.contentType = "text/plain; version=0.0.4";
        resp.body = metrics_.prometheus();
    };
    http_->addRoute("/metrics", std::move(metrics));
    // Live configuration, as the original probe: /config/update?report_period_ms=N (or
    // interval=SECONDS). Every key is checked before anything changes.
    // A change of state: admin role, POST only; the keys in the query string or a form body.
    RouteSpec update;
    update.role = MP_ROLE_ADMIN;
    update.methods = MP_HTTP_POST;
    update.fn = [this](const mp_http_request& req, mp_http_response& resp) {
        resp.contentType = "application/json";
        auto fail = [&](int status, const std::string& why) {
            resp.status = status;
            resp.body = "{\"error\":" + mp::jsonString(why) + "}";
        };
        const auto& params = static_cast<const RequestCtx*>(req.impl)->params;
        if (params.empty()) {
            fail(400, "nothing to update: give report_period_ms=N or interval=SECONDS");
            return;
        }
        uint64_t ms = 0;
        for (const auto& [key, value] : params) {
            uint64_t scale = 0;
            if (key == "report_period_ms") {
                scale = 1;
            } else if (key == "interval") {
                scale = 1000;
            } else {
                fail(400, "unknown key: " + key + " (known: report_period_ms, interval)");
                return;
            }
            uint64_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
                fail(400, key + ": not a whole number: " + value);
                return;
            }
            if (n > 86400000 / scale || n * scale < 100) {
                fail(400, key + ": out of range (100 ms to 1 day): " + value);
                return;
            }
            if (ms != 0 && ms != n * scale) {
                fail(400, "report_period_ms and interval disagree");
                return;
            }
            ms = n * scale;
        }
        uint64_t before = intervalMs_.load();
        setIntervalMs(ms);
        log(MP_LOG_INFO, "host",
            "report interval changed from " + std::to_string(before) + " ms to " +
                std::to_string(ms) + " ms by " + std::string(mp::view(req.principal)) + " (" +
                std::string(mp::view(req.remote_addr)) + ")");
        resp.status = 200;
        resp.body = "{\"interval_ms\":" + std::to_string(ms) +
                    ",\"previous_interval_ms\":" + std::to_string(before) + "}";
    };
    http_->addRoute("/config/update", std::move(update));
}

}  // namespace mp::host
