// SPDX-License-Identifier: Apache-2.0
// MySQL's binary JSON: the bytes of a JSON column in a MySQL row image (MySQL 5.7 and 8.x;
// MariaDB's JSON is LONGTEXT and never comes here), read back into JSON text the way MySQL
// prints it: `{"a": 1, "b": [true, null]}`, members in their stored order (MySQL sorts keys by
// length, then bytes), ", " and ": " between them.
//
// Scalars: integers as they are, doubles as the shortest text that reads back the same (with
// ".0" when that has no point or exponent, as MySQL marks a double), strings as JSON strings.
// MySQL's opaque values: DECIMAL as a number, DATE as "2015-01-15", TIME as "23:24:25.000000",
// DATETIME and TIMESTAMP as "2015-01-15 23:24:25.000000" (MySQL prints six digits), anything
// else as MySQL prints it, "base64:type<column type>:<base64 of the bytes>". An empty value is
// JSON null.
//
// Outside input: every offset and length is checked against the bytes of the container that
// holds it; nesting deeper than MySQL's 100 levels is refused, and so is a value whose text
// would grow past 16 times its bytes (offsets that point into each other, which MySQL never
// writes, would otherwise repeat a subtree exponentially).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mp::binlog {

/// Appends the JSON text of one binary JSON value to `out` (as JSON text, not quoted). False
/// for a malformed value, `why` saying what is wrong; `out` may then hold part of the text.
bool appendBinaryJson(const uint8_t* data, size_t size, std::string& out, std::string& why);

}  // namespace mp::binlog
