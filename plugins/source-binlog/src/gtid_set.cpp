// SPDX-License-Identifier: Apache-2.0
#include "gtid_set.hpp"

#include <algorithm>
#include <mp/mysql_client.hpp>
#include <mp/mysql_wire.hpp>
#include <mp/sdk.hpp>

namespace mp::binlog {
namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && blank(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && blank(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

// A transaction number: digits only, 1 to kMaxGno.
bool parseGno(std::string_view s, uint64_t& out) {
    s = trim(s);
    if (s.empty() || s.size() > 19) {
        return false;
    }
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v == 0 || v > MysqlGtidSet::kMaxGno) {
        return false;
    }
    out = v;
    return true;
}

// Splits `s` at each `sep`, calling f(part) until it answers false.
template <typename F>
bool eachPart(std::string_view s, char sep, F&& f) {
    for (;;) {
        const size_t at = s.find(sep);
        if (!f(s.substr(0, at))) {
            return false;
        }
        if (at == std::string_view::npos) {
            return true;
        }
        s.remove_prefix(at + 1);
    }
}

}  // namespace

bool MysqlGtidSet::parseUuid(std::string_view text, Uuid& out) {
    // 8-4-4-4-12 hex digits (MySQL also reads them without the dashes: 32 digits)
    size_t k = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '-' && text.size() == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
            continue;
        }
        const int hi = hexDigit(c);
        const int lo = i + 1 < text.size() ? hexDigit(text[i + 1]) : -1;
        if (hi < 0 || lo < 0 || k == out.size()) {
            return false;
        }
        out[k++] = static_cast<uint8_t>(hi << 4 | lo);
        ++i;
    }
    return k == out.size() && (text.size() == 36 || text.size() == 32);
}

std::string MysqlGtidSet::uuidText(const Uuid& sid) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (size_t i = 0; i < sid.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out += '-';
        }
        out += hex[sid[i] >> 4];
        out += hex[sid[i] & 15];
    }
    return out;
}

bool MysqlGtidSet::parse(std::string_view text, MysqlGtidSet& out) {
    out.clear();
    const bool ok = eachPart(text, ',', [&](std::string_view entry) {
        entry = trim(entry);
        if (entry.empty()) {
            return true;  // "a,,b" and a trailing comma: MySQL skips them too
        }
        const size_t colon = entry.find(':');
        Uuid sid{};
        if (colon == std::string_view::npos || !parseUuid(trim(entry.substr(0, colon)), sid)) {
            return false;
        }
        return eachPart(entry.substr(colon + 1), ':', [&](std::string_view iv) {
            const size_t dash = iv.find('-');
            uint64_t first = 0;
            uint64_t last = 0;
            if (!parseGno(iv.substr(0, dash), first)) {
                return false;  // no number, 0, too large, or a tag ("uuid:tag:1-5")
            }
            last = first;
            if (dash != std::string_view::npos && !parseGno(iv.substr(dash + 1), last)) {
                return false;
            }
            if (last >= first) {
                out.addInterval(sid, Interval{first, last});
            }
            return true;
        });
    });
    if (!ok) {
        out.clear();
    }
    return ok;
}

bool MysqlGtidSet::decode(const uint8_t* d, size_t n, MysqlGtidSet& out) {
    out.clear();
    MysqlGtidSet set;  // into `out` only when whole
    mysql::PacketReader r(d, n);
    const uint64_t nSids = r.le(8);
    // 24 bytes at least per UUID: more than what is left is damage (or the tagged form, whose
    // first byte is a format number)
    if (!r.ok() || nSids > r.left() / 24) {
        return false;
    }
    for (uint64_t i = 0; i < nSids; ++i) {
        Uuid sid{};
        if (!r.has(16)) {
            return false;
        }
        std::copy_n(r.here(), 16, sid.begin());
        r.skip(16);
        const uint64_t nIntervals = r.le(8);
        if (!r.ok() || nIntervals > r.left() / 16) {
            return false;
        }
        for (uint64_t k = 0; k < nIntervals; ++k) {
            const uint64_t start = r.le(8);
            const uint64_t end = r.le(8);  // exclusive
            if (!r.ok() || start == 0 || end <= start || end - 1 > kMaxGno) {
                return false;
            }
            set.addInterval(sid, Interval{start, end - 1});
        }
    }
    if (!r.ok()) {
        return false;
    }
    out = std::move(set);
    return true;
}

void MysqlGtidSet::addInterval(const Uuid& sid, Interval iv) {
    auto& list = sids_[sid];
    // the common case: the next transaction of the last interval
    if (!list.empty() && list.back().last + 1 == iv.first) {
        list.back().last = std::max(list.back().last, iv.last);
        return;
    }
    // the first interval that ends at or after iv.first - 1 (touching or overlapping)
    auto it = std::lower_bound(list.begin(), list.end(), iv.first,
                               [](const Interval& a, uint64_t f) { return a.last + 1 < f; });
    auto end = it;
    while (end != list.end() && end->first <= iv.last + 1) {
        iv.first = std::min(iv.first, end->first);
        iv.last = std::max(iv.last, end->last);
        ++end;
    }
    it = list.erase(it, end);
    list.insert(it, iv);
}

void MysqlGtidSet::add(const Uuid& sid, uint64_t gno) {
    if (gno == 0 || gno > kMaxGno) {
        return;
    }
    addInterval(sid, Interval{gno, gno});
}

void MysqlGtidSet::add(const MysqlGtidSet& other) {
    for (const auto& [sid, list] : other.sids_) {
        for (const Interval& iv : list) {
            addInterval(sid, iv);
        }
    }
}

bool MysqlGtidSet::contains(const Uuid& sid, uint64_t gno) const {
    const auto* list = intervals(sid);
    if (list == nullptr) {
        return false;
    }
    return std::any_of(list->begin(), list->end(),
                       [gno](const Interval& iv) { return iv.first <= gno && gno <= iv.last; });
}

const std::vector<MysqlGtidSet::Interval>* MysqlGtidSet::intervals(const Uuid& sid) const {
    auto it = sids_.find(sid);
    return it == sids_.end() ? nullptr : &it->second;
}

std::string MysqlGtidSet::text() const {
    std::string out;
    for (const auto& [sid, list] : sids_) {
        if (!out.empty()) {
            out += ',';
        }
        out += uuidText(sid);
        for (const Interval& iv : list) {
            out += ':' + std::to_string(iv.first);
            if (iv.last != iv.first) {
                out += '-' + std::to_string(iv.last);
            }
        }
    }
    return out;
}

std::string MysqlGtidSet::encode() const {
    std::string out;
    mysql::putLe(out, sids_.size(), 8);
    for (const auto& [sid, list] : sids_) {
        out.append(reinterpret_cast<const char*>(sid.data()), sid.size());
        mysql::putLe(out, list.size(), 8);
        for (const Interval& iv : list) {
            mysql::putLe(out, iv.first, 8);
            mysql::putLe(out, iv.last + 1, 8);
        }
    }
    return out;
}

}  // namespace mp::binlog
