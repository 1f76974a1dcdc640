// SPDX-License-Identifier: Apache-2.0
// A small pool of worker threads with a bounded queue: the HTTP server runs request handlers
// and websocket callbacks there, never on its event loop.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mp::host {

class WorkerPool {
  public:
    WorkerPool(size_t threads, size_t maxQueued);
    ~WorkerPool() { join(); }
    /// False when the queue is full (the caller answers 503).
    bool submit(std::function<void()> task);
    /// Runs what is queued, then ends the threads.
    void join();
    /// Tasks queued or running.
    size_t busy();

  private:
    void run();
    size_t max_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    size_t running_ = 0;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace mp::host
