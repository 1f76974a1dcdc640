// SPDX-License-Identifier: Apache-2.0
// The MySQL/MariaDB client/server protocol's numbers, named once (commands, response headers,
// capability and status flags). The field types, length-encoded integers and the bounds-checked
// reader are shared with source-binlog: mp/mysql_wire.hpp (libs/mysql).
#pragma once

#include <mp/mysql_wire.hpp>

namespace mp::mysql {

// The first byte of a server response packet.
enum Header : uint8_t {
    kOkHeader = 0x00,
    kLocalInfileHeader = 0xfb,  // LOCAL INFILE request (to COM_QUERY); NULL in a text row
    kEofHeader = 0xfe,          // EOF, or an OK ending a result under CLIENT_DEPRECATE_EOF
    kErrHeader = 0xff,
};
constexpr uint8_t kProtocolV10 = 10;  // the greeting's protocol version
// An EOF packet (or an OK ending a result under CLIENT_DEPRECATE_EOF) is shorter than this;
// a row may start with 0xfe only when it is at least this long.
constexpr uint64_t kMaxEofLength = 9;
constexpr uint64_t kMaxWirePacket = 0xffffff;  // a longer packet continues in the next one
// The shortest OK packet: header, affected rows, last insert id, status, warnings.
constexpr uint64_t kMinOkLength = 7;
// MariaDB's progress reports look like ERR packets with this code: not an answer.
constexpr uint16_t kMariaProgressCode = 0xffff;
// COM_STMT_EXECUTE's statement id meaning "the statement just prepared" (MariaDB).
constexpr uint32_t kLastPreparedStatement = 0xffffffff;

// Capability flags (client and server).
constexpr uint32_t kClientMysql = 1;  // unset by MariaDB servers: extended caps present
constexpr uint32_t kConnectWithDb = 8;
constexpr uint32_t kCompress = 32;
constexpr uint32_t kProtocol41 = 512;
constexpr uint32_t kSsl = 2048;
constexpr uint32_t kSecureConnection = 32768;
constexpr uint32_t kPluginAuthLenenc = 1u << 21;
constexpr uint32_t kSessionTrack = 1u << 23;
constexpr uint32_t kDeprecateEof = 1u << 24;
constexpr uint32_t kQueryAttributes = 1u << 27;
// MariaDB extended capabilities (bits 32..63, sent in otherwise reserved bytes).
constexpr uint32_t kMariaCacheMetadata = 1u << 4;

// Server status flags.
constexpr uint16_t kMoreResults = 0x0008;
constexpr uint16_t kCursorExists = 0x0040;
constexpr uint16_t kSessionStateChanged = 0x4000;
// Session-state change types (OK packets under CLIENT_SESSION_TRACK).
constexpr uint8_t kTrackSchema = 1;

// COM_STMT_EXECUTE flags.
constexpr uint8_t kCursorTypeMask = 0x07;           // any cursor type
constexpr uint8_t kParameterCountAvailable = 0x08;  // query attributes: the count is sent
constexpr uint8_t kNewParamsBound = 1;              // types (and names) follow the bitmap

constexpr uint16_t kUnsignedFlag = 0x8000;  // in a parameter's 2-byte type

}  // namespace mp::mysql
