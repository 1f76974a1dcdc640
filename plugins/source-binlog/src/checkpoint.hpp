// SPDX-License-Identifier: Apache-2.0
// Where a replica resumes: the GTID state (MariaDB) and the file and position, written
// atomically (mp::writeFileAtomic) once every record before it is delivered. A text file of
// `key=value` lines: gtid_state, file, position.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace mp::binlog {

struct Checkpoint {
    std::string gtidState;
    std::string file;
    uint64_t position = 0;
};

/// The checkpoint in `path`; nullopt when there is none. Throws mp::Error when the file exists
/// but does not read as one (the reason and the path in the message).
std::optional<Checkpoint> loadCheckpoint(const std::string& path);
/// "" on success, else why not.
std::string saveCheckpoint(const std::string& path, const Checkpoint& c);

}  // namespace mp::binlog
