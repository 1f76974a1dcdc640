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

/// DECIMAL(precision, scale) in the server's binary form, appended as a JSON string with the
/// scale's digits (`"-0.50"`); false when the bytes run out or precision and scale are not a
/// DECIMAL's.
bool appendDecimal(mysql::PacketReader& r, unsigned precision, unsigned scale, std::string& out);

/// The decimal digits of `v`, zero-padded to at least `width` of them.
void appendPadded(std::string& out, uint64_t v, int width);

/// The metadata bytes a column type takes in the table map (0, 1 or 2); -1 for an unknown type.
int metadataLength(uint8_t type);

/// Reads the metadata of one column from the table map (little-endian, or STRING's two bytes).
void readMetadata(mysql::PacketReader& r, Column& c);

}  // namespace mp::binlog
