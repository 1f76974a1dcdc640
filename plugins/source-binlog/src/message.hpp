// SPDX-License-Identifier: Apache-2.0
// Row changes as the JSON messages MySQL Monitor's consumers read (row_insert, row_update,
// row_delete, heartbeat; docs in the README), with the fields added after theirs: schema,
// gtid, binlog_file, binlog_position, server_id.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "binlog.hpp"

namespace mp::binlog {

struct MessageOptions {
    bool fullImages = false;  // row_update: every column before and after, not only changes
};

/// Appends the message of one row change to `out` (cleared first). `touched`: an update's
/// columns to show (a merged update's); null: those whose value changed. `parts` > 1 adds
/// "merged": parts.
void rowMessage(std::string& out, const EventHeader& h, const TableMap& t, RowKind kind,
                const Image& before, const Image& after, const Position& pos, uint64_t nowS,
                const MessageOptions& o, const std::vector<bool>* touched = nullptr,
                uint32_t parts = 1);

/// {"timestamp":now,"type":"heartbeat"} plus where the stream is.
void heartbeatMessage(std::string& out, uint64_t nowS, const Position& pos);

/// The id of a row change, the same whenever the binlog is read again: the transaction's GTID
/// (or, without GTIDs, the file and the transaction's start) and the change's index in it.
std::string messageId(const Position& pos, uint64_t transactionStart, uint32_t index);

}  // namespace mp::binlog
