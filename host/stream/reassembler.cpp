// SPDX-License-Identifier: Apache-2.0
#include "stream/reassembler.hpp"

#include <algorithm>
#include <cstring>

namespace mp::host {

void ReassemblyStats::add(const ReassemblyStats& o) {
    segments += o.segments;
    deliveredBytes += o.deliveredBytes;
    outOfOrder += o.outOfOrder;
    retransmittedBytes += o.retransmittedBytes;
    conflictBytes += o.conflictBytes;
    gaps += o.gaps;
    gapBytes += o.gapBytes;
    bufferLimitGaps += o.bufferLimitGaps;
    workerLimitGaps += o.workerLimitGaps;
    ackGaps += o.ackGaps;
    truncatedBytes += o.truncatedBytes;
}

namespace {

/// What malloc takes for a request of n bytes: 8 bytes of header, 16-byte granules, 32 at
/// least (glibc on 64-bit; other allocators are close).
constexpr size_t allocated(size_t n) { return std::max<size_t>(32, (n + 8 + 15) & ~size_t{15}); }

}  // namespace

size_t Reassembler::chunkCost(size_t stored) {
    // A std::map node: the tree links (a colour and three pointers) and the key/value pair.
    constexpr size_t kNode =
        allocated(4 * sizeof(void*) + sizeof(std::pair<const uint64_t, Chunk>));
    return kNode + (stored == 0 ? 0 : allocated(stored));
}

void Reassembler::hold(const Chunk& c) {
    const size_t cost = chunkCost(c.bytes.size());
    held_ += cost;
    stored_ += c.bytes.size();
    if (shared_ != nullptr) {
        shared_->held += cost;
    }
}

void Reassembler::release(const Chunk& c) {
    const size_t cost = chunkCost(c.bytes.size());
    held_ -= cost;
    stored_ -= c.bytes.size();
    if (shared_ != nullptr) {
        shared_->held -= cost;
    }
}

size_t Reassembler::recount() const {
    size_t n = 0;
    for (const auto& [off, c] : pending_) {
        n += chunkCost(c.bytes.size());
    }
    return n;
}

void Reassembler::start(uint32_t isn) {
    started_ = true;
    isn_ = isn;
    next_ = 0;
}

int64_t Reassembler::offsetOf(uint32_t seq) const {
    // Signed distance from the next expected byte: correct across the 2^32 wrap as long as
    // segments are within 2 GiB of it, which TCP windows guarantee.
    auto expected = static_cast<uint32_t>(isn_ + static_cast<uint32_t>(next_));
    auto d = static_cast<int32_t>(seq - expected);
    return static_cast<int64_t>(next_) + d;
}

void Reassembler::deliverGap(uint64_t len, uint64_t ts, StreamEvents& out, ReassemblyStats& st) {
    if (len == 0) {
        return;
    }
    ++st.gaps;
    st.gapBytes += len;
    next_ += len;
    out.onGap(len, ts);
}

void Reassembler::insert(uint64_t off, const uint8_t* data, uint64_t len, bool missing,
                         ReassemblyStats& st) {
    // Stores the parts of [off, off+len) not already buffered: the first copy wins.
    uint64_t pos = off;
    const uint64_t end = off + len;
    auto it = pending_.upper_bound(off);
    if (it != pending_.begin()) {
        --it;
    }
    while (pos < end) {
        // Skip over an existing chunk covering pos, comparing the overlap.
        if (it != pending_.end() && it->first <= pos && it->first + it->second.len > pos) {
            uint64_t cEnd = std::min(end, it->first + it->second.len);
            uint64_t n = cEnd - pos;
            st.retransmittedBytes += n;
            if (!missing && !it->second.missing) {
                const uint8_t* a = data + (pos - off);
                const uint8_t* b = it->second.bytes.data() + (pos - it->first);
                for (uint64_t i = 0; i < n; ++i) {
                    st.conflictBytes += a[i] != b[i] ? 1 : 0;
                }
            }
            pos = cEnd;
            ++it;
            continue;
        }
        if (it != pending_.end() && it->first + it->second.len <= pos) {
            ++it;
            continue;
        }
        // Uncovered from pos up to the next chunk (or the end).
        uint64_t stop = end;
        if (it != pending_.end() && it->first < stop) {
            stop = it->first;
        }
        Chunk c;
        c.len = stop - pos;
        c.missing = missing;
        if (!missing) {
            c.bytes.assign(data + (pos - off), data + (stop - off));
        }
        it = pending_.emplace_hint(it, pos, std::move(c));
        hold(it->second);
        ++it;
        pos = stop;
    }
}

void Reassembler::drain(uint64_t ts, StreamEvents& out, ReassemblyStats& st) {
    while (!pending_.empty()) {
        auto it = pending_.begin();
        uint64_t cOff = it->first;
        uint64_t cEnd = cOff + it->second.len;
        if (cOff > next_) {
            break;
        }
        if (cEnd > next_) {
            uint64_t skip = next_ - cOff;
            if (it->second.missing) {
                deliverGap(cEnd - next_, ts, out, st);
            } else {
                size_t n = static_cast<size_t>(cEnd - next_);
                st.deliveredBytes += n;
                next_ = cEnd;
                out.onData(it->second.bytes.data() + skip, n, ts);
            }
        }
        release(it->second);
        pending_.erase(it);
    }
}

void Reassembler::add(uint32_t seq, const uint8_t* data, uint32_t captured, uint32_t length,
                      uint64_t ts, StreamEvents& out, ReassemblyStats& st) {
    if (length == 0) {
        return;
    }
    if (!started_) {
        start(seq);
    }
    ++st.segments;
    captured = std::min(captured, length);
    st.truncatedBytes += length - captured;
    int64_t off = offsetOf(seq);
    int64_t end = off + length;
    if (end <= static_cast<int64_t>(next_)) {
        st.retransmittedBytes += length;
        return;
    }
    if (off <= static_cast<int64_t>(next_)) {
        // In order (possibly overlapping what was delivered: that copy already won).
        uint64_t skip = next_ - static_cast<uint64_t>(off);
        st.retransmittedBytes += skip;
        if (skip < captured) {
            size_t n = captured - static_cast<size_t>(skip);
            st.deliveredBytes += n;
            next_ += n;
            out.onData(data + skip, n, ts);
        }
        if (static_cast<int64_t>(next_) < end) {  // the part the snapshot length cut off
            deliverGap(static_cast<uint64_t>(end) - next_, ts, out, st);
        }
        drain(ts, out, st);
        return;
    }
    ++st.outOfOrder;
    auto uoff = static_cast<uint64_t>(off);
    insert(uoff, data, captured, false, st);
    if (captured < length) {
        insert(uoff + captured, nullptr, length - captured, true, st);
    }
    while (held_ > maxBuffered_ && !pending_.empty()) {
        // Over the bound: give up the oldest hole so buffered data can move on.
        ++st.bufferLimitGaps;
        giveUpOldestHole(ts, out, st);
    }
    while (shared_ != nullptr && shared_->held > shared_->limit && !pending_.empty()) {
        ++st.workerLimitGaps;  // the same, for the bound of all directions together
        giveUpOldestHole(ts, out, st);
    }
}

void Reassembler::giveUpOldestHole(uint64_t ts, StreamEvents& out, ReassemblyStats& st) {
    // After a drain the first chunk is always past next_: there is a hole before it.
    deliverGap(pending_.begin()->first - next_, ts, out, st);
    drain(ts, out, st);
}

void Reassembler::acked(uint32_t ack, uint64_t ts, StreamEvents& out, ReassemblyStats& st) {
    if (!started_ || pending_.empty()) {
        return;
    }
    int64_t ackOff = offsetOf(ack);
    uint64_t first = pending_.begin()->first;
    if (ackOff <= static_cast<int64_t>(next_) || first <= next_) {
        return;
    }
    uint64_t upTo = std::min<uint64_t>(static_cast<uint64_t>(ackOff), first);
    ++st.ackGaps;
    deliverGap(upTo - next_, ts, out, st);
    drain(ts, out, st);
}

void Reassembler::fin(uint32_t seq) {
    if (!started_) {
        start(seq);
    }
    int64_t off = offsetOf(seq);
    if (off >= 0 && !finOff_) {
        finOff_ = static_cast<uint64_t>(off);
    }
}

void Reassembler::flush(uint64_t ts, StreamEvents& out, ReassemblyStats& st) {
    while (!pending_.empty()) {
        uint64_t first = pending_.begin()->first;
        if (first > next_) {
            deliverGap(first - next_, ts, out, st);
        }
        drain(ts, out, st);
    }
}

}  // namespace mp::host
