// SPDX-License-Identifier: Apache-2.0
// The `mysql.inbound` record, version 1: one client command of a captured MySQL connection (its
// exact bytes, the user and schema in force, and what the server answered), or one event of the
// connection's life (login, close, bytes known missing). decoder-mysql's collector writes them,
// replay-mysql reads them; docs/inbound-records.md is the reference. Two forms carry the same
// fields: JSON (application/json, for any consumer) and a compact binary form
// (kBinaryContentType), both parsed here with every length checked against the payload.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::mysql::inbound {

constexpr int kVersion = 1;
constexpr std::string_view kStream = "mysql.inbound";
constexpr std::string_view kJsonContentType = "application/json";
constexpr std::string_view kBinaryContentType = "application/vnd.mysqlprobe.inbound.v1";

enum class Type : uint8_t { Command = 1, Connect = 2, Close = 3, Gap = 4 };
/// How the captured server answered a command (Lost: the answer was not seen: a gap, the
/// connection's end; None: the command has no answer, such as COM_STMT_CLOSE).
enum class Outcome : uint8_t { None = 0, Ok = 1, Error = 2, ResultSet = 3, Prepared = 4, Lost = 5 };

struct Record {
    Type type = Type::Command;
    std::string client;         // "ip:port" ("[v6]:port")
    std::string server;         // "ip:port"
    uint32_t connectionId = 0;  // the server's thread id (0: not seen, a connection mid-stream)
    uint64_t n = 0;             // 1, 2, 3... over the records of one connection: a hole is a loss
    uint64_t ts = 0;            // ns since the epoch: the request, the login, the close, the gap
    bool loginKnown = true;     // false: the connection started before the capture, its user
                                // and schema are unknown (never guessed)
    std::string user;           // in force when the command was sent; logged in (connect)
    std::string schema;

    // Command.
    uint8_t command = 0;
    std::string commandName;   // "COM_QUERY"
    std::string bytes;         // the command packet's payload: byte 0 is the command
    bool truncated = false;    // `bytes` is a prefix (the command was longer than kept)
    uint32_t statementId = 0;  // execute/fetch/reset/close/long data: the statement;
                               // prepare: the id the server gave it
    std::string sql;           // query and prepare text, an execute's prepared text (bounded:
                               // for display; `bytes` is what replays)
    uint64_t templateId = 0;
    std::string templateText;
    Outcome outcome = Outcome::None;
    uint16_t errorCode = 0;
    std::string sqlState;
    std::string errorMessage;
    uint64_t rows = 0;  // rows of the result sets
    uint64_t affectedRows = 0;
    uint64_t responseTs = 0;  // end of the answer (0: none)

    // Connect.
    std::string serverVersion;
    uint32_t clientFlags = 0;  // the client's capability flags
    uint16_t collation = 0;    // the client's collation id (0: unknown)
    bool tls = false;
    bool compressed = false;
    bool loginFailed = false;  // errorCode says why

    // Close.
    std::string reason;  // "quit", "closed", "reset", "end of capture", "evicted"...

    // Gap.
    bool gapFromServer = false;  // which direction lost bytes
    uint64_t gapBytes = 0;
};

const char* typeName(Type t);
const char* outcomeName(Outcome o);

/// The JSON form, appended to `out`.
void appendJson(const Record& r, std::string& out);
/// The binary form, appended to `out`.
void appendBinary(const Record& r, std::string& out);
/// Either form, chosen by `contentType` (the binary one by its content type, or by its magic
/// when the content type is empty or application/octet-stream). False with `error` set when the
/// payload is not a version-1 inbound record.
bool parse(std::string_view payload, std::string_view contentType, Record& out, std::string& error);

/// A batch: several records in one payload (the collector's `inbound_batch`): binary records
/// one after the other, or JSON records one per line (kJsonBatchContentType). A single record
/// is a batch of one. Every record is appended to `out`; false with `error` (and `out` as it
/// was) when any of them does not parse.
constexpr std::string_view kJsonBatchContentType = "application/x-ndjson";
bool parseBatch(std::string_view payload, std::string_view contentType, std::vector<Record>& out,
                std::string& error);

}  // namespace mp::mysql::inbound
