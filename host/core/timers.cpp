// SPDX-License-Identifier: Apache-2.0
#include "core/timers.hpp"

struct mp_timer {
    mp::host::TimerService* service = nullptr;
    std::chrono::steady_clock::time_point due;
    std::chrono::nanoseconds period{0};
    std::function<void()> fn;
};

namespace mp::host {

TimerService::TimerService() : thread_([this] { run(); }) {}

TimerService::~TimerService() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

mp_timer* TimerService::start(std::chrono::nanoseconds delay, std::chrono::nanoseconds period,
                              std::function<void()> fn) {
    auto t = std::make_unique<mp_timer>();
    t->service = this;
    t->due = std::chrono::steady_clock::now() + delay;
    t->period = period;
    t->fn = std::move(fn);
    mp_timer* raw = t.get();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        timers_[raw] = std::move(t);
    }
    cv_.notify_all();
    return raw;
}

void TimerService::stop(mp_timer* t) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (std::this_thread::get_id() != thread_.get_id()) {
        cv_.wait(lock, [&] { return running_ != t; });
    }
    timers_.erase(t);
}

void TimerService::stopTimer(mp_timer* t) { t->service->stop(t); }

void TimerService::reschedule(mp_timer* t, std::chrono::nanoseconds period) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = timers_.find(t);
        if (it == timers_.end()) {
            return;
        }
        it->second->period = period;
        it->second->due = std::chrono::steady_clock::now() + period;
    }
    cv_.notify_all();
}

void TimerService::run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!quit_) {
        auto now = std::chrono::steady_clock::now();
        mp_timer* next = nullptr;
        for (auto& [raw, t] : timers_) {
            if (next == nullptr || t->due < next->due) {
                next = raw;
            }
        }
        if (next == nullptr) {
            cv_.wait(lock);
            continue;
        }
        if (next->due == std::chrono::steady_clock::time_point::max()) {
            cv_.wait(lock);
            continue;
        }
        if (next->due > now) {
            // By value: stop() may free the timer while this thread waits.
            const auto due = next->due;
            cv_.wait_until(lock, due);
            continue;
        }
        running_ = next;
        std::function<void()> fn = next->fn;
        lock.unlock();
        fn();
        lock.lock();
        running_ = nullptr;
        auto it = timers_.find(next);
        if (it != timers_.end()) {
            if (it->second->period.count() > 0) {
                // Fixed rate, but never a burst of catch-up runs after a stall.
                it->second->due += it->second->period;
                if (it->second->due < std::chrono::steady_clock::now()) {
                    it->second->due = std::chrono::steady_clock::now() + it->second->period;
                }
            } else {
                // One-shot: parked until stop(), so the handle never dangles.
                it->second->due = std::chrono::steady_clock::time_point::max();
            }
        }
        cv_.notify_all();
    }
}

}  // namespace mp::host
