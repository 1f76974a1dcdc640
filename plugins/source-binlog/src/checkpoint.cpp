// SPDX-License-Identifier: Apache-2.0
#include "checkpoint.hpp"

#include <fstream>
#include <mp/files.hpp>
#include <mp/sdk.hpp>
#include <sstream>

namespace mp::binlog {

std::optional<Checkpoint> loadCheckpoint(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        return std::nullopt;
    }
    Checkpoint c;
    std::string line;
    bool any = false;
    int n = 0;
    while (std::getline(in, line) && ++n <= 16) {
        auto eq = line.find('=');
        if (line.empty() || line[0] == '#') {
            continue;
        }
        if (eq == std::string::npos || line.size() > 4096) {
            throw Error(path + ":" + std::to_string(n) + ": not a key=value line");
        }
        std::string key = line.substr(0, eq);
        std::string value = line.substr(eq + 1);
        if (key == "gtid_state") {
            c.gtidState = value;
        } else if (key == "file") {
            c.file = value;
        } else if (key == "position") {
            try {
                c.position = std::stoull(value);
            } catch (const std::exception&) {
                throw Error(path + ":" + std::to_string(n) + ": position is not a number");
            }
        } else {
            continue;  // written by a newer version: ignored
        }
        any = true;
    }
    if (!any) {
        throw Error(path + ": empty checkpoint (remove it to start from `start:`)");
    }
    return c;
}

std::string saveCheckpoint(const std::string& path, const Checkpoint& c) {
    std::ostringstream out;
    out << "# source-binlog checkpoint: resume after this (every record before it delivered)\n"
        << "gtid_state=" << c.gtidState << "\nfile=" << c.file << "\nposition=" << c.position
        << "\n";
    return writeFileAtomic(path, out.str());
}

}  // namespace mp::binlog
