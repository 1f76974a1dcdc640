// SPDX-License-Identifier: Apache-2.0
// One column value of a row image, read as the server wrote it and appended as JSON text:
// integers (BIGINT UNSIGNED as a string), DECIMAL as a string with its scale, FLOAT and DOUBLE
// as the shortest number that reads back the same, BIT as a number (a string beyond 53 bits),
// temporal types as MySQL prints them (TIMESTAMP in UTC), text as a string, binary and
// GEOMETRY as base64, ENUM and SET by name when the binlog carries the names (else by number).
#pragma once

#include <mp/mysql_wire.hpp>
#include <mp/sdk.hpp>
#include <string>

#include "binlog.hpp"

namespace mp::binlog {

using mp::appendBase64;  // mp/sdk.hpp

/// Appends the value's JSON text to `out`; false when the bytes run out or the type is unknown
/// (`why` says which).
bool appendValue(mysql::PacketReader& r, const Column& c, std::string& out, std::string& why);

/// DECIMAL(precision, scale) in the server's binary form, appended with the scale's digits as
/// a JSON string (`"-0.50"`), or as a JSON number when not `quoted`; false when the bytes run
/// out or precision and scale are not a DECIMAL's.
bool appendDecimal(mysql::PacketReader& r, unsigned precision, unsigned scale, std::string& out,
                   bool quoted = true);

/// Temporal text as MySQL prints it (json_binary.cpp's opaque values use them too):
/// "YYYY-MM-DD"; "HH:MM:SS" (hours with two digits at least); ".ffffff" with `fsp` digits of
/// `micros`, nothing when fsp is 0.
void appendDate(std::string& out, uint64_t year, uint64_t month, uint64_t day);
void appendClock(std::string& out, uint64_t hour, uint64_t minute, uint64_t second);
void appendFraction(std::string& out, uint64_t micros, unsigned fsp);

/// The metadata bytes a column type takes in the table map (0, 1 or 2); -1 for an unknown type.
int metadataLength(uint8_t type);

/// Reads the metadata of one column from the table map (little-endian, or STRING's two bytes).
void readMetadata(mysql::PacketReader& r, Column& c);

}  // namespace mp::binlog
