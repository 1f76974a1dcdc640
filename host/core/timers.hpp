// SPDX-License-Identifier: Apache-2.0
// One thread running every timer of the host and the plugins, serialized.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

struct mp_timer;

namespace mp::host {

class TimerService {
  public:
    TimerService();
    ~TimerService();
    TimerService(const TimerService&) = delete;
    TimerService& operator=(const TimerService&) = delete;

    /// Runs fn after delay, then every period (zero: once). The handle stays valid until stop().
    mp_timer* start(std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                    std::function<void()> fn);
    /// Cancels; waits for a running callback unless called from the timer thread itself.
    void stop(mp_timer* t);
    /// stop() on the service that started `t` (a handle knows its service).
    static void stopTimer(mp_timer* t);
    /// Changes the period of a running timer (next run = now + period).
    void reschedule(mp_timer* t, std::chrono::nanoseconds period);

  private:
    void run();
    std::mutex mutex_;
    std::condition_variable cv_;
    std::map<mp_timer*, std::unique_ptr<mp_timer>> timers_;
    mp_timer* running_ = nullptr;
    bool quit_ = false;
    std::thread thread_;
};

}  // namespace mp::host
