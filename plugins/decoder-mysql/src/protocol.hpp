// SPDX-License-Identifier: Apache-2.0
// The MySQL/MariaDB client/server protocol's numbers, named once (commands, response headers,
// capability and status flags, field types), and the one bounds-checked reader every part of
// the decoder reads packet contents with.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace mp::mysql {

// Client commands (first payload byte).
enum Command : uint8_t {
    kSleep = 0x00,
    kQuit = 0x01,
    kInitDb = 0x02,
    kQuery = 0x03,
    kFieldList = 0x04,
    kCreateDb = 0x05,
    kDropDb = 0x06,
    kRefresh = 0x07,
    kShutdown = 0x08,
    kStatistics = 0x09,
    kProcessInfo = 0x0a,
    kConnect = 0x0b,
    kProcessKill = 0x0c,
    kDebug = 0x0d,
    kPing = 0x0e,
    kTime = 0x0f,
    kDelayedInsert = 0x10,
    kChangeUser = 0x11,
    kBinlogDump = 0x12,
    kTableDump = 0x13,
    kConnectOut = 0x14,
    kRegisterSlave = 0x15,
    kStmtPrepare = 0x16,
    kStmtExecute = 0x17,
    kStmtSendLongData = 0x18,
    kStmtClose = 0x19,
    kStmtReset = 0x1a,
    kSetOption = 0x1b,
    kStmtFetch = 0x1c,
    kDaemon = 0x1d,
    kBinlogDumpGtid = 0x1e,
    kResetConnection = 0x1f,
    kStmtBulkExecute = 0xfa,
};

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

// Length-encoded integers: a first byte below 0xfb is the value; these announce 2, 3 or 8
// bytes (0xfb is NULL in a row, 0xff never starts one).
constexpr uint8_t kLenenc2 = 0xfc;
constexpr uint8_t kLenenc3 = 0xfd;
constexpr uint8_t kLenenc8 = 0xfe;
constexpr uint8_t kLenencNull = 0xfb;

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

// Field types (binary protocol).
enum FieldType : uint8_t {
    kTypeDecimal = 0x00,
    kTypeTiny = 0x01,
    kTypeShort = 0x02,
    kTypeLong = 0x03,
    kTypeFloat = 0x04,
    kTypeDouble = 0x05,
    kTypeNull = 0x06,
    kTypeTimestamp = 0x07,
    kTypeLongLong = 0x08,
    kTypeInt24 = 0x09,
    kTypeDate = 0x0a,
    kTypeTime = 0x0b,
    kTypeDateTime = 0x0c,
    kTypeYear = 0x0d,
    kTypeNewDate = 0x0e,
    kTypeVarchar = 0x0f,
    kTypeBit = 0x10,
    kTypeVector = 0xf2,
    kTypeJson = 0xf5,
    kTypeNewDecimal = 0xf6,
    kTypeEnum = 0xf7,
    kTypeSet = 0xf8,
    kTypeTinyBlob = 0xf9,
    kTypeMediumBlob = 0xfa,
    kTypeLongBlob = 0xfb,
    kTypeBlob = 0xfc,
    kTypeVarString = 0xfd,
    kTypeString = 0xfe,
    kTypeGeometry = 0xff,
};
constexpr uint16_t kUnsignedFlag = 0x8000;  // in a parameter's 2-byte type

// A bounds-checked reader over a packet's kept bytes: any read past the end turns it not ok()
// and every later read returns 0 or "" (callers check ok() once, after a run of reads). The
// small reads are forced inline: they run for every field of every packet, and a header's
// external linkage alone makes the compiler keep them out of line (1% more instructions).
class PacketReader {
  public:
    PacketReader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
    bool ok() const { return ok_; }
    /// The content is not what it should be: the reader turns not ok().
    void fail() { ok_ = false; }
    size_t size() const { return n_; }
    size_t left() const { return ok_ ? n_ - pos_ : 0; }
    const uint8_t* here() const { return d_ + pos_; }
    /// True when `k` more bytes are there; otherwise the reader turns not ok().
    [[gnu::always_inline]] bool has(size_t k) {
        if (!ok_ || k > n_ - pos_) {
            ok_ = false;
        }
        return ok_;
    }
    [[gnu::always_inline]] void skip(size_t k) {
        if (has(k)) {
            pos_ += k;
        }
    }
    [[gnu::always_inline]] uint64_t le(size_t k) {
        if (!has(k)) {
            return 0;
        }
        const uint8_t* p = d_ + pos_;
        pos_ += k;
        // The widths the protocol uses, without a loop (le() runs for every field read).
        switch (k) {
            case 1:
                return p[0];
            case 2:
                return p[0] | (static_cast<uint64_t>(p[1]) << 8);
            case 4:
                return p[0] | (static_cast<uint64_t>(p[1]) << 8) |
                       (static_cast<uint64_t>(p[2]) << 16) | (static_cast<uint64_t>(p[3]) << 24);
            default: {
                uint64_t v = 0;
                for (size_t i = 0; i < k; ++i) {
                    v |= static_cast<uint64_t>(p[i]) << (8 * i);
                }
                return v;
            }
        }
    }
    [[gnu::always_inline]] uint64_t lenenc() {
        uint64_t first = le(1);
        if (first < kLenencNull) {
            return first;
        }
        if (first == kLenenc2) {
            return le(2);
        }
        if (first == kLenenc3) {
            return le(3);
        }
        if (first == kLenenc8) {
            return le(8);
        }
        ok_ = false;  // NULL (0xfb) and 0xff are not lengths
        return 0;
    }
    /// A length-encoded string, cut to `max` bytes (the whole length is consumed).
    std::string lenencString(size_t max) {
        uint64_t len = lenenc();
        if (!ok_ || len > n_ - pos_) {
            ok_ = false;
            return "";
        }
        std::string s(reinterpret_cast<const char*>(d_ + pos_),
                      std::min(static_cast<size_t>(len), max));
        pos_ += static_cast<size_t>(len);
        return s;
    }
    std::string nulString(size_t max) {
        if (!ok_) {
            return "";
        }
        const void* end = std::memchr(d_ + pos_, 0, n_ - pos_);
        size_t len = end != nullptr ? static_cast<const uint8_t*>(end) - (d_ + pos_) : n_ - pos_;
        std::string s(reinterpret_cast<const char*>(d_ + pos_), std::min(len, max));
        pos_ += len + (end != nullptr ? 1 : 0);
        return s;
    }
    void restInto(std::string& out, size_t max) {
        out.clear();
        if (ok_) {
            out.append(reinterpret_cast<const char*>(d_ + pos_), std::min(n_ - pos_, max));
            pos_ = n_;
        }
    }
    std::string rest(size_t max) {
        if (!ok_) {
            return "";
        }
        std::string s(reinterpret_cast<const char*>(d_ + pos_), std::min(n_ - pos_, max));
        pos_ = n_;
        return s;
    }

  private:
    const uint8_t* d_;
    size_t n_;
    size_t pos_ = 0;
    bool ok_ = true;
};

}  // namespace mp::mysql
