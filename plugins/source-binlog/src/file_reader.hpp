// SPDX-License-Identifier: Apache-2.0
// Binlog files from disk, event by event (what mysqlbinlog reads): the magic, then events of
// the size their header gives. The file is read a megabyte at a time into one buffer and each
// event is handed out where it lies (no copy); an event longer than the buffer grows it, up to
// the limit.
#pragma once

#include <cstdint>
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

    /// The next whole event: `data` and `size` stay valid until the next call. False at the
    /// end of the file. Throws mp::Error for an event that claims fewer than 19 or more than
    /// the limit's bytes, or that the file cuts short (a file still being written ends in such
    /// a piece: the message says so), and for a read error.
    bool next(const uint8_t*& data, size_t& size);
    uint64_t offset() const { return offset_; }

  private:
    /// At least `n` bytes from `at_` in the buffer, unless the file ends first; what is there.
    size_t fill(size_t n);

    std::string path_;
    size_t max_;
    int fd_ = -1;
    uint64_t offset_ = 0;  // of the next event in the file
    std::vector<uint8_t> buf_;
    size_t at_ = 0;   // the next event's first byte in buf_
    size_t end_ = 0;  // bytes read into buf_
    bool eof_ = false;
};

}  // namespace mp::binlog
