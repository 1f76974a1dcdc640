// SPDX-License-Identifier: Apache-2.0
#include "core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace mp::host {

namespace {
std::atomic<int> gLevel{MP_LOG_INFO};
std::mutex gMutex;
}  // namespace

int parseLogLevel(std::string_view name) {
    if (name == "trace") {
        return MP_LOG_TRACE;
    }
    if (name == "debug") {
        return MP_LOG_DEBUG;
    }
    if (name == "warn") {
        return MP_LOG_WARN;
    }
    if (name == "error") {
        return MP_LOG_ERROR;
    }
    return MP_LOG_INFO;
}

const char* logLevelName(int level) {
    switch (level) {
        case MP_LOG_TRACE:
            return "TRACE";
        case MP_LOG_DEBUG:
            return "DEBUG";
        case MP_LOG_INFO:
            return "INFO ";
        case MP_LOG_WARN:
            return "WARN ";
        default:
            return "ERROR";
    }
}

void setLogLevel(int level) { gLevel.store(level); }
int logLevel() { return gLevel.load(); }

void log(int level, std::string_view source, std::string_view message) {
    if (level < gLevel.load(std::memory_order_relaxed)) {
        return;
    }
    using namespace std::chrono;
    auto now = system_clock::now();
    std::time_t t = system_clock::to_time_t(now);
    auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    // Messages from plugins may contain anything: keep one line per message.
    std::string clean(message);
    for (char& c : clean) {
        if (c == '\n' || c == '\r') {
            c = ' ';
        }
    }
    std::lock_guard<std::mutex> lock(gMutex);
    std::fprintf(stderr, "%s.%03dZ %s %.*s: %s\n", stamp, static_cast<int>(ms), logLevelName(level),
                 static_cast<int>(source.size()), source.data(), clean.c_str());
    std::fflush(stderr);
}

}  // namespace mp::host
