// SPDX-License-Identifier: Apache-2.0
// MySQL Monitor's de-duplication window, with its merge rules made exact: row changes wait
// `delay` seconds of binlog time before they are published; a later change of the same row
// (found by its key as the row is now) within that time is merged into the waiting one:
//   update + update  -> one update: the first before image, the last after image, and every
//                       column any part changed (also one changed back: a consumer that saw
//                       the first part before a crash is brought back too)
//   insert + update  -> one insert with the updated values
//   update + delete  -> one delete of the row as it was before the first update
//   insert + delete  -> one delete (of a row a consumer may never have seen: a replay after a
//                       crash can merge an insert that was published alone the first time)
//   delete + insert  -> kept as two changes (the insert waits on its own)
// An update that changes the row's key is never merged, nor merged into (it and what follows
// wait on their own). Nothing is dropped for good. The window runs on the binlog's clock (the
// events' timestamps), not the reader's: a node that crashed and reads the binlog again from
// its checkpoint merges the same parts into the same changes, and a merged change's id,
// FIRST..LAST (the ids of its first and last parts), names the same content. Changes leave in
// the order their first part arrived. Memory: the bytes held are bounded; past the bound the
// oldest changes leave early (counted: the one case where a replay may merge otherwise).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "binlog.hpp"

namespace mp::binlog {

struct Change {
    EventHeader header;  // the first part's
    std::shared_ptr<const TableMap> table;
    RowKind kind = RowKind::Insert;
    Image before, after;
    Position position;          // the first part's
    std::string id;             // the first part's
    std::string lastId;         // the last part's, when merged
    uint32_t parts = 1;         // changes merged into this one
    std::vector<bool> touched;  // update: columns some part changed
    uint64_t eventS = 0;        // the first part's binlog time
    uint64_t order = 0;         // arrival order of the first part
    bool gone = false;          // merged away or dropped
    size_t bytes() const {
        return before.text.size() + after.text.size() + id.size() + 128 +
               (before.end.size() + after.end.size()) * sizeof(uint32_t);
    }
};

class Window {
  public:
    struct Stats {
        uint64_t merged = 0;  // changes merged into a waiting one
        uint64_t early = 0;   // changes sent before their time (memory bound)
    };
    using Emit = std::function<void(const Change&)>;

    Window(uint64_t delayS, size_t maxBytes, Emit emit)
        : delayS_(delayS), maxBytes_(maxBytes), emit_(std::move(emit)) {}

    /// One row change (images copied). Merges it or keeps it waiting; may send older ones.
    void add(const EventHeader& h, const std::shared_ptr<const TableMap>& t, RowKind kind,
             const Image& before, const Image& after, const Position& pos, std::string id);
    /// Sends every change whose binlog time is `delay` before `nowS` (the newest event's time,
    /// or the wall clock when the server says it has nothing more), all of them with `all`.
    void flush(uint64_t nowS, bool all = false);
    /// The arrival order of the oldest change still waiting, or the next order when none: a
    /// commit noted before that order has all its changes sent.
    uint64_t oldestWaiting() const;
    uint64_t nextOrder() const { return next_; }
    const Stats& stats() const { return stats_; }
    size_t bytesHeld() const { return bytes_; }

  private:
    static std::string identity(const TableMap& t, const Image& img);
    void send(Change& c);

    uint64_t delayS_;
    size_t maxBytes_;
    Emit emit_;
    std::deque<std::unique_ptr<Change>> queue_;       // arrival order
    std::unordered_map<std::string, Change*> byRow_;  // the row as it is now -> its change
    size_t bytes_ = 0;
    uint64_t next_ = 1;
    Stats stats_;
};

}  // namespace mp::binlog
