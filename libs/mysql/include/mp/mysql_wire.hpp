// SPDX-License-Identifier: Apache-2.0
// What the MySQL/MariaDB client protocol and the binary log share, written once: the command
// codes, the field types, length-encoded integers and the one bounds-checked reader both the wire
// decoder (decoder-mysql) and the binlog decoder (source-binlog) read bytes with.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace mp::mysql {

// Length-encoded integers: a first byte below 0xfb is the value; these announce 2, 3 or 8
// bytes (0xfb is NULL in a row, 0xff never starts one).
constexpr uint8_t kLenenc2 = 0xfc;
constexpr uint8_t kLenenc3 = 0xfd;
constexpr uint8_t kLenenc8 = 0xfe;
constexpr uint8_t kLenencNull = 0xfb;

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
    kTypeTimestamp2 = 0x11,  // the binlog's types for the temporal types with fractions
    kTypeDateTime2 = 0x12,
    kTypeTime2 = 0x13,
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

// A bounds-checked reader over a packet's (or a binlog event's) bytes: any read past the end turns
// it not ok() and every later read returns 0 or "" (callers check ok() once, after a run of reads).
// The small reads are forced inline: they run for every field of every packet, and a header's
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
    /// Big-endian (binlog row images: temporal types, decimal, bit).
    uint64_t be(size_t k) {
        if (k > 8 || !has(k)) {
            return 0;
        }
        const uint8_t* p = d_ + pos_;
        pos_ += k;
        uint64_t v = 0;
        for (size_t i = 0; i < k; ++i) {
            v = (v << 8) | p[i];
        }
        return v;
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
