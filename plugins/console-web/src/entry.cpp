// SPDX-License-Identifier: Apache-2.0
// console-web: a sink that keeps the node's last reports and serves a page at `/` that shows
// them (queries, capture health) beside what the node's other endpoints say (cluster,
// replication, records and sinks). The page, its script and style are built into the plugin.
#include <chrono>
#include <cstddef>
#include <memory>
#include <mp/report.hpp>
#include <mp/sdk.hpp>
#include <mutex>
#include <string>

#include "assets.hpp"
#include "window.hpp"

namespace {

// clang-format off
const mp_property kProps[] = {
    {"window_intervals", MP_PROP_INT, 0, "60", "reports held for the sliding window and the charts (the newest is always held)", 1, 3600, nullptr},
    {"max_memory_mb", MP_PROP_INT, 0, "64", "bytes the held reports and their merge may take; beyond, the oldest reports are let go (counted)", 1, 65536, nullptr},
    {nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr},
};
// clang-format on

constexpr size_t kMaxTemplatesPerReport = 100000;

const char* contentType(std::string_view path) {
    auto ends = [&](std::string_view s) {
        return path.size() >= s.size() && path.substr(path.size() - s.size()) == s;
    };
    if (ends(".js")) {
        return "text/javascript; charset=utf-8";
    }
    if (ends(".css")) {
        return "text/css; charset=utf-8";
    }
    return "text/html; charset=utf-8";
}

class Console : public mp::Plugin {
  public:
    Console(mp::Host host, const mp::Config& cfg)
        : Plugin(host),
          current_(std::make_shared<const mp::console::Window>(
              static_cast<size_t>(cfg.i64("window_intervals")),
              static_cast<size_t>(cfg.i64("max_memory_mb")) << 20)),
          reports_(host.counter("reports_total", "reports taken into the window")),
          rejected_(host.counter("reports_rejected_total", "reports that could not be read")),
          letGo_(host.counter("reports_let_go_total",
                              "reports let go before window_intervals for max_memory_mb")),
          heldBytes_(
              host.counter("held_bytes", "bytes held by the reports and their merge", MP_GAUGE)),
          updateUs_(host.counter("update_us",
                                 "time the last report took to read and merge into the window, us",
                                 MP_GAUGE)),
          routes_(*this) {
        // The page, script and style carry no data: anyone may load them; the data comes
        // from routes that require the read role (docs/security.md).
        for (const mp::console::Asset* a = mp::console::kAssets; a->path != nullptr; ++a) {
            routes_.add(a->path, &Console::asset, MP_ROLE_ANYONE);
        }
        routes_.add("/console/whoami", &Console::whoami, MP_ROLE_ANYONE);
        routes_.add("/console/state", &Console::state, MP_ROLE_READ);
        routes_.add("/console/template", &Console::templ, MP_ROLE_READ);
    }

    mp_status onEvent(const mp_event& ev) override {
        if (ev.type != MP_EVENT_REPORT) {
            return MP_OK;
        }
        const auto t0 = std::chrono::steady_clock::now();
        std::shared_ptr<const mp::console::Held> held;
        try {
            held = mp::console::parseReport(
                std::string(reinterpret_cast<const char*>(ev.payload.data), ev.payload.len),
                kMaxTemplatesPerReport);
        } catch (const std::exception& e) {
            if (!warnedRejected_) {  // once: the counter tells how many more
                host().warn(std::string("report not shown: ") + e.what());
                warnedRejected_ = true;
            }
            rejected_.add();
            return MP_OK;
        }
        // Reports come one at a time on the sink's thread: copy the current window (pointers),
        // merge outside the lock, publish. The handlers never wait for a merge.
        auto next = std::make_shared<mp::console::Window>(*snapshot());
        const uint64_t before = next->dropped();
        next->add(std::move(held));
        reports_.add();
        letGo_.add(next->dropped() - before);
        heldBytes_.set(static_cast<int64_t>(next->heldBytes()));
        updateUs_.set(std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count());
        std::lock_guard<std::mutex> lock(mutex_);
        current_ = std::move(next);
        return MP_OK;
    }

  private:
    std::shared_ptr<const mp::console::Window> snapshot() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return current_;
    }

    void asset(const mp_http_request* req, mp_http_response* resp) {
        const std::string_view path(req->path.data, req->path.len);
        for (const mp::console::Asset* a = mp::console::kAssets; a->path != nullptr; ++a) {
            if (path == a->path) {
                host().reply(resp, 200, contentType(path),
                             std::string_view(reinterpret_cast<const char*>(a->data), a->size));
                return;
            }
        }
        throw mp::HttpError(404, "no such asset");
    }

    // Who the page's caller is, so that it asks for a token when it needs one and shows
    // operation buttons to admins only. Never the token itself.
    void whoami(const mp_http_request* req, mp_http_response* resp) {
        const bool hasRole =
            req->struct_size >= offsetof(mp_http_request, principal) + sizeof(req->principal);
        const uint32_t role = hasRole ? req->role : MP_ROLE_ANYONE;
        const std::string principal =
            hasRole ? std::string(req->principal.data, req->principal.len) : "";
        host().replyJson(resp, 200,
                         std::string("{\"role\":\"") + mp::roleName(role) +
                             "\",\"principal\":" + mp::jsonString(principal) + "}");
    }

    void state(const mp_http_request* req, mp_http_response* resp) {
        mp::console::Query q;
        try {
            q = mp::console::parseQuery([&](const char* name) { return host().param(req, name); });
        } catch (const std::invalid_argument& e) {
            throw mp::HttpError(400, e.what());
        }
        host().replyJson(resp, 200, snapshot()->state(q));
    }

    void templ(const mp_http_request* req, mp_http_response* resp) {
        auto id = host().param(req, "id");
        auto server = host().param(req, "server");
        auto schema = host().param(req, "schema");
        if (!id || !server || !schema) {
            throw mp::HttpError(400, "id, server and schema are required");
        }
        uint64_t v = 0;
        if (!mp::report::parseHex64(*id, v)) {  // as the report writes it (hex64)
            throw mp::HttpError(400, "id: 16 hex digits");
        }
        auto body = snapshot()->detail(*server, *schema, v);
        if (!body) {
            throw mp::HttpError(404, "no such template in the window");
        }
        host().replyJson(resp, 200, *body);
    }

    mutable std::mutex mutex_;
    std::shared_ptr<const mp::console::Window> current_;
    mp::Counter reports_;
    mp::Counter rejected_;
    mp::Counter letGo_;
    mp::Counter heldBytes_;
    mp::Counter updateUs_;
    bool warnedRejected_ = false;  // the sink's thread only
    mp::Routes<Console> routes_;
};

}  // namespace

MP_DECLARE_PLUGIN(Console, MP_KIND_SINK, "console-web", "0.1.0",
                  "A web console at /: queries, capture health, cluster, replication, records",
                  kProps, 0)
