// SPDX-License-Identifier: Apache-2.0
// Binlog files from disk, event by event (what mysqlbinlog reads): the magic, then events of
// the size their header gives, each kept whole in one buffer no larger than the limit.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace mp::binlog {

class FileReader {
  public:
    /// Opens `path` and checks its magic; throws mp::Error with the reason.
    FileReader(const std::string& path, size_t maxEventBytes);
    ~FileReader();
    FileReader(const FileReader&) = delete;
    FileReader& operator=(const FileReader&) = delete;

    /// The next whole event into `ev`; false at the end of the file. Throws mp::Error for an
    /// event that claims fewer than 19 or more than the limit's bytes, or that the file cuts
    /// short (a file still being written ends in such a piece: the message says so).
    bool next(std::vector<uint8_t>& ev);
    uint64_t offset() const { return offset_; }

  private:
    std::string path_;
    size_t max_;
    FILE* f_ = nullptr;
    uint64_t offset_ = 0;
};

}  // namespace mp::binlog
