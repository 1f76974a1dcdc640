// SPDX-License-Identifier: Apache-2.0
// The worker pool of the HTTP server (see worker_pool.hpp).
#include "server/worker_pool.hpp"

#include <algorithm>
#include <exception>
#include <string>

#include "core/log.hpp"

namespace mp::host {

WorkerPool::WorkerPool(size_t threads, size_t maxQueued) : max_(maxQueued) {
    for (size_t i = 0; i < std::max<size_t>(1, threads); ++i) {
        threads_.emplace_back([this] { run(); });
    }
}

bool WorkerPool::submit(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(m_);
    if (queue_.size() >= max_ || stopping_) {
        return false;
    }
    queue_.push_back(std::move(task));
    cv_.notify_one();
    return true;
}

void WorkerPool::join() {
    {
        std::lock_guard<std::mutex> lock(m_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
        if (t.joinable()) {
            t.join();
        }
    }
    threads_.clear();
}

size_t WorkerPool::busy() {
    std::lock_guard<std::mutex> lock(m_);
    return queue_.size() + running_;
}

void WorkerPool::run() {
    while (true) {
        std::function<void()> task;
        {
            std::unique_lock<std::mutex> lock(m_);
            cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
            if (queue_.empty()) {
                return;
            }
            task = std::move(queue_.front());
            queue_.pop_front();
            ++running_;
        }
        try {
            task();
        } catch (const std::exception& e) {
            log(MP_LOG_ERROR, "http", std::string("a handler failed: ") + e.what());
        } catch (...) {
            log(MP_LOG_ERROR, "http", "a handler failed");
        }
        std::lock_guard<std::mutex> lock(m_);
        --running_;
    }
}

}  // namespace mp::host
