// SPDX-License-Identifier: Apache-2.0
#include "feed.hpp"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/URI.h>

#include <mp/sdk.hpp>

namespace mp::proxy {

Feed::Feed(std::string url, std::string token, OnTopology on, Log log, FeedCounters& counters)
    : url_(std::move(url)),
      token_(std::move(token)),
      on_(std::move(on)),
      log_(std::move(log)),
      counters_(counters) {
    Poco::URI uri;
    try {
        uri = Poco::URI(url_);
    } catch (const std::exception& e) {
        throw Error("servers_url: '" + url_ + "' is not a URL");
    }
    if (uri.getScheme() != "http" || uri.getHost().empty() || !uri.getUserInfo().empty() ||
        uri.getQuery().find("access_token") != std::string::npos) {
        throw Error(
            "servers_url: http://host:port/servers (the token goes in `token`, never in "
            "the URL), not '" +
            url_ + "'");
    }
}

Feed::~Feed() { stop(); }

void Feed::start() {
    thread_ = std::thread([this] { run(); });
}

void Feed::stop() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) {
            return;
        }
        stopping_ = true;
        if (session_ != nullptr) {
            static_cast<Poco::Net::HTTPClientSession*>(session_)->abort();
        }
    }
    cv_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Feed::run() {
    int backoffMs = 100;
    bool failing = false;
    while (true) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (stopping_) {
                return;
            }
        }
        std::string why;
        try {
            follow();
            backoffMs = 100;  // it ran and ended: start over quickly
        } catch (const std::exception& e) {
            why = e.what();
        }
        ++counters_.reconnects;
        std::unique_lock<std::mutex> lock(mu_);
        if (stopping_) {
            return;
        }
        if (!why.empty() && !failing) {
            log_(MP_LOG_WARN, "proxy: the topology feed " + url_ + ": " + why +
                                  " (the last targets stay; retrying)");
        }
        failing = !why.empty();
        cv_.wait_for(lock, std::chrono::milliseconds(backoffMs), [&] { return stopping_; });
        backoffMs = std::min(backoffMs * 2, 5000);
    }
}

void Feed::follow() {
    Poco::URI uri(url_);
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(5, 0), Poco::Timespan(5, 0), Poco::Timespan(60, 0));
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) {
            return;
        }
        session_ = &session;
    }
    struct Clear {
        Feed& f;
        ~Clear() {
            std::lock_guard<std::mutex> lock(f.mu_);
            f.session_ = nullptr;
        }
    } clear{*this};
    Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, uri.getPathEtc(),
                               Poco::Net::HTTPMessage::HTTP_1_1);
    req.set("Accept", "text/event-stream");
    if (!token_.empty()) {
        req.set("Authorization", "Bearer " + token_);
    }
    session.sendRequest(req);
    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    if (resp.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
        ++counters_.refused;
        throw Error("answered " + std::to_string(static_cast<int>(resp.getStatus())) + " " +
                    resp.getReason());
    }
    SseParser parser([this](const std::string& event, const std::string& data) {
        if (event != "init" && event != "update" && event != "message") {
            return;
        }
        std::string why;
        auto topo = parseTopology(data, &why);
        if (!topo) {
            if (counters_.invalid++ == 0) {
                log_(MP_LOG_WARN, "proxy: a topology event that is not LAIN's JSON (" + why +
                                      "): the targets stay as they were");
            }
            return;
        }
        ++counters_.updates;
        on_(*topo);
    });
    // Byte by byte from Poco's buffered stream (a get() blocks only when nothing has arrived):
    // what has arrived is handed to the parser at once, events are small and rare.
    std::string chunk;
    for (int c = in.get(); c != std::char_traits<char>::eof(); c = in.get()) {
        chunk += static_cast<char>(c);
        if (c == '\n' || chunk.size() >= 16384 || in.rdbuf()->in_avail() <= 0) {
            parser.feed(chunk);
            chunk.clear();
        }
    }
    throw Error("the stream ended");
}

}  // namespace mp::proxy
