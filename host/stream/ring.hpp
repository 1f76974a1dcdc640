// SPDX-License-Identifier: Apache-2.0
// A bounded single-producer single-consumer byte ring of variable-length records.
// The producer never blocks: when a record does not fit, reserve() returns nullptr.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace mp::host {

class SpscRing {
  public:
    /// Capacity is rounded up to a power of two, at least 4 KiB.
    explicit SpscRing(size_t capacity) {
        size_t cap = 4096;
        while (cap < capacity) {
            cap <<= 1;
        }
        cap_ = cap;
        buf_ = std::make_unique<uint8_t[]>(cap_);
    }

    static constexpr size_t align(size_t n) { return (n + 7) & ~static_cast<size_t>(7); }

    /// Space for a record of n bytes (n <= capacity/2), or nullptr when full.
    uint8_t* reserve(size_t n) {
        n = align(n);
        if (n > cap_ / 2) {
            return nullptr;
        }
        uint64_t head = head_.load(std::memory_order_relaxed);
        uint64_t tail = tail_.load(std::memory_order_acquire);
        size_t pos = static_cast<size_t>(head & (cap_ - 1));
        size_t pad = pos + n > cap_ ? cap_ - pos : 0;
        if (cap_ - (head - tail) < pad + n) {
            return nullptr;
        }
        if (pad != 0) {
            // Mark the tail end as skipped; the record starts at the beginning.
            uint32_t wrap = kWrap;
            std::memcpy(buf_.get() + pos, &wrap, sizeof wrap);
            head += pad;
            pendingPad_ = pad;
            pos = 0;
        } else {
            pendingPad_ = 0;
        }
        return buf_.get() + pos;
    }
    /// Publishes the record reserved last (n as given to reserve()).
    void commit(size_t n) {
        uint64_t head = head_.load(std::memory_order_relaxed);
        head_.store(head + pendingPad_ + align(n), std::memory_order_release);
    }

    /// The next record, or nullptr when empty. Records start with a uint32 type != kWrap.
    const uint8_t* peek() {
        while (true) {
            uint64_t tail = tail_.load(std::memory_order_relaxed);
            uint64_t head = head_.load(std::memory_order_acquire);
            if (tail == head) {
                return nullptr;
            }
            size_t pos = static_cast<size_t>(tail & (cap_ - 1));
            uint32_t type = 0;
            std::memcpy(&type, buf_.get() + pos, sizeof type);
            if (type == kWrap) {
                tail_.store(tail + (cap_ - pos), std::memory_order_release);
                continue;
            }
            return buf_.get() + pos;
        }
    }
    /// Frees the record returned by peek() (n as given to reserve()).
    void release(size_t n) {
        uint64_t tail = tail_.load(std::memory_order_relaxed);
        tail_.store(tail + align(n), std::memory_order_release);
    }

    bool empty() const {
        return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
    }
    size_t capacity() const { return cap_; }
    /// Bytes queued (approximate from the producer's side).
    size_t used() const {
        return static_cast<size_t>(head_.load(std::memory_order_relaxed) -
                                   tail_.load(std::memory_order_acquire));
    }

    static constexpr uint32_t kWrap = 0xffffffffu;

  private:
    size_t cap_;
    std::unique_ptr<uint8_t[]> buf_;
    size_t pendingPad_ = 0;  // producer side only
    alignas(64) std::atomic<uint64_t> head_{0};
    alignas(64) std::atomic<uint64_t> tail_{0};
};

}  // namespace mp::host
