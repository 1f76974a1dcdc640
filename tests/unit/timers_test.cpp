// SPDX-License-Identifier: Apache-2.0
#include "core/timers.hpp"

#include <doctest/doctest.h>

#include <atomic>

#include "support/process.hpp"

using namespace std::chrono_literals;

TEST_SUITE("timers") {
    TEST_CASE("a periodic timer runs until stopped") {
        mp::host::TimerService ts;
        std::atomic<int> runs{0};
        mp_timer* t = ts.start(1ms, 5ms, [&] { ++runs; });
        CHECK(mptest::eventually([&] { return runs.load() >= 3; }));
        ts.stop(t);
        int after = runs.load();
        std::this_thread::sleep_for(30ms);
        CHECK(runs.load() == after);
    }

    TEST_CASE("a one-shot timer runs once and its handle stays valid") {
        mp::host::TimerService ts;
        std::atomic<int> runs{0};
        mp_timer* t = ts.start(1ms, 0ms, [&] { ++runs; });
        CHECK(mptest::eventually([&] { return runs.load() == 1; }));
        std::this_thread::sleep_for(20ms);
        CHECK(runs.load() == 1);
        ts.stop(t);  // allowed after it ran
    }

    TEST_CASE("stop from inside the callback does not deadlock") {
        mp::host::TimerService ts;
        std::atomic<int> runs{0};
        mp_timer* t = nullptr;
        std::atomic<bool> ready{false};
        t = ts.start(1ms, 1ms, [&] {
            while (!ready.load()) {
            }
            ++runs;
            ts.stop(t);
        });
        ready = true;
        CHECK(mptest::eventually([&] { return runs.load() == 1; }));
        std::this_thread::sleep_for(20ms);
        CHECK(runs.load() == 1);
    }

    TEST_CASE("reschedule changes the period") {
        mp::host::TimerService ts;
        std::atomic<int> runs{0};
        mp_timer* t = ts.start(1h, 1h, [&] { ++runs; });
        ts.reschedule(t, 2ms);
        CHECK(mptest::eventually([&] { return runs.load() >= 2; }));
        ts.stop(t);
    }
}
