// SPDX-License-Identifier: Apache-2.0
// Report encodings of the websocket sink: native JSON (text, or snappy in a binary frame) and
// the original Go Mysql Probe's format (mysqlprobe-v1: its short-key JSON, snappy, binary).
#pragma once

#include <cstdint>
#include <mp/pusher.hpp>  // Encoded
#include <optional>
#include <string>
#include <string_view>

namespace mp::ws {

enum class Format { Native, MysqlProbeV1 };
enum class Compression { None, Snappy };

/// Converts a native report (docs/report-format.md) into the original probe's report: a JSON
/// object schema -> {a schema, b server IP, c last seen ns, d [summary per template],
/// e [{a client IP, b [summary per template, with its slow queries]}], f unknown executes}.
/// Returns nullopt when the report has no template (the original sends nothing then).
/// Throws std::runtime_error on a report that is not the native format.
std::optional<std::string> toMysqlProbeV1(std::string_view nativeJson);

/// The original probe's template key: the MD5 of the template text, 32 hex digits.
std::string md5Hex(const std::string& text);

std::string snappyCompress(std::string_view in);
/// False on input that is not a valid snappy block (or would exceed `maxOut` bytes).
bool snappyUncompress(std::string_view in, std::string& out, size_t maxOut);

/// The message for one report, or nullopt when nothing is to be sent (empty v1 report).
std::optional<mp::push::Encoded> encodeReport(std::string_view nativeJson, Format f, Compression c);

}  // namespace mp::ws
