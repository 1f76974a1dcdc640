// SPDX-License-Identifier: Apache-2.0
// A remote monitor's topology feed (GET /servers, Server-Sent Events, LAIN's JSON) followed by
// a thread of its own: reconnects with a backoff (100 ms doubling to 5 s) when it breaks, and
// keeps the last targets meanwhile.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "topology.hpp"

namespace mp::proxy {

struct FeedCounters {
    std::atomic<uint64_t> updates{0}, invalid{0}, reconnects{0}, refused{0};
};

class Feed {
  public:
    using OnTopology = std::function<void(const Topology&)>;
    using Log = std::function<void(int level, const std::string&)>;
    /// `url`: http://host:port/path; `token`: sent as "Authorization: Bearer" (a secret).
    Feed(std::string url, std::string token, OnTopology on, Log log, FeedCounters& counters);
    ~Feed();
    void start();
    void stop();

  private:
    void run();
    void follow();
    std::string url_, token_;
    OnTopology on_;
    Log log_;
    FeedCounters& counters_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    void* session_ = nullptr;  // the HTTP session being read (aborted by stop())
    std::thread thread_;
};

}  // namespace mp::proxy
