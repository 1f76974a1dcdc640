// SPDX-License-Identifier: Apache-2.0
#include "message.hpp"

#include <mp/sdk.hpp>

namespace mp::binlog {
namespace {

// {"name":value,...} of the columns `pick` selects among those the image holds.
template <typename Pick>
void columns(std::string& out, const TableMap& t, const Image& img, Pick pick) {
    out += '{';
    bool first = true;
    for (size_t i = 0; i < t.columns.size() && i < img.end.size(); ++i) {
        std::string_view v = img.value(i);
        if (v.empty() || !pick(i)) {
            continue;
        }
        if (!first) {
            out += ',';
        }
        first = false;
        appendJsonString(out, t.columns[i].name);
        out += ':';
        out += v;
    }
    out += '}';
}

}  // namespace

void rowMessage(std::string& out, const EventHeader& h, const TableMap& t, RowKind kind,
                const Image& before, const Image& after, const Position& pos, uint64_t nowS,
                const MessageOptions& o, const std::vector<bool>* touched, uint32_t parts) {
    out.clear();
    out += "{\"timestamp\":";
    out += std::to_string(nowS);
    out += ",\"binlog_timestamp\":";
    out += std::to_string(h.timestamp);
    out += ",\"type\":";
    using namespace std::string_view_literals;
    out += kind == RowKind::Insert   ? "\"row_insert\""sv
           : kind == RowKind::Update ? "\"row_update\""sv
                                     : "\"row_delete\""sv;
    out += ",\"schema\":";
    appendJsonString(out, t.schema);
    out += ",\"table_name\":";
    appendJsonString(out, t.table);
    out += ",\"keys\":";
    // The row's key: from the image that finds the row (the one before the change), except
    // for an insert.
    const Image& keyed = kind == RowKind::Insert ? after : before;
    columns(out, t, keyed, [&](size_t i) { return t.columns[i].key; });
    switch (kind) {
        case RowKind::Insert:
            out += ",\"values\":";
            columns(out, t, after, [](size_t) { return true; });
            break;
        case RowKind::Update: {
            auto changed = [&](size_t i) {
                if (o.fullImages) {
                    return true;
                }
                if (touched != nullptr) {
                    return i < touched->size() && (*touched)[i];
                }
                return i >= before.end.size() || before.value(i) != after.value(i);
            };
            out += ",\"before_values\":";
            columns(out, t, before, changed);
            out += ",\"after_values\":";
            columns(out, t, after, changed);
            break;
        }
        case RowKind::Delete:
            if (o.fullImages) {
                out += ",\"before_values\":";
                columns(out, t, before, [](size_t) { return true; });
            }
            break;
    }
    if (!pos.gtid.empty()) {
        out += ",\"gtid\":";
        appendJsonString(out, pos.gtid);
    }
    out += ",\"binlog_file\":";
    appendJsonString(out, pos.file);
    out += ",\"binlog_position\":";
    out += std::to_string(h.logPos != 0 ? h.logPos : pos.pos);
    out += ",\"server_id\":";
    out += std::to_string(h.serverId);
    if (parts > 1) {
        out += ",\"merged\":";
        out += std::to_string(parts);
    }
    out += '}';
}

void heartbeatMessage(std::string& out, uint64_t nowS, const Position& pos) {
    out = "{\"timestamp\":" + std::to_string(nowS) + ",\"type\":\"heartbeat\"";
    if (!pos.gtid.empty()) {
        out += ",\"gtid\":" + jsonString(pos.gtid);
    }
    out += ",\"binlog_file\":" + jsonString(pos.file) +
           ",\"binlog_position\":" + std::to_string(pos.pos) + "}";
}

std::string messageId(const Position& pos, uint64_t transactionStart, uint32_t index) {
    if (!pos.gtid.empty()) {
        return pos.gtid + "/" + std::to_string(index);
    }
    return pos.file + ":" + std::to_string(transactionStart) + "/" + std::to_string(index);
}

}  // namespace mp::binlog
