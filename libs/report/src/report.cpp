// SPDX-License-Identifier: Apache-2.0
#include "mp/report.hpp"

#include <Poco/JSON/Array.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mp/sdk.hpp>
#include <sstream>
#include <stdexcept>

namespace mp::report {

std::string formatTenths(double us) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", us);
    return buf;
}

// Sums and extremes that other nodes merge: nanosecond precision.
std::string formatExact(double us) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.3f", us);
    return buf;
}

namespace {
const double kGamma = (1 + LatencySketch::kAlpha) / (1 - LatencySketch::kAlpha);
const double kLogGamma = std::log(kGamma);

void breakdown(std::ostream& out, const Breakdown& b) {
    out << "\"count\":" << b.count << ",\"errors\":" << b.errors
        << ",\"latency_sum_us\":" << formatExact(b.latencySumUs)
        << ",\"error_latency_sum_us\":" << formatExact(b.errorLatencySumUs)
        << ",\"no_index_used\":" << b.noIndexUsed << ",\"no_good_index_used\":" << b.noGoodIndexUsed
        << ",\"query_was_slow\":" << b.slowFlag << ",\"last_seen_ns\":" << b.lastSeen;
}

// [{"addr":..., counts...}, ...] then, when the bound was reached, {"other":true, counts...}.
template <size_t Max>
void breakdowns(std::ostream& out, const BreakdownSet<Max>& set, const char* field) {
    out << '[';
    bool first = true;
    for (const auto& [name, b] : set.named) {
        out << (first ? "" : ",") << "{\"" << field << "\":" << mp::jsonString(name) << ',';
        breakdown(out, b);
        out << '}';
        first = false;
    }
    if (set.other.count != 0) {
        out << (first ? "" : ",") << "{\"other\":true,";
        breakdown(out, set.other);
        out << '}';
    }
    out << ']';
}
}  // namespace

std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

bool parseHex64(std::string_view text, uint64_t& v) {
    if (text.size() != 16) {
        return false;
    }
    v = 0;
    for (char c : text) {
        const int d = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                             : -1;
        if (d < 0) {
            return false;
        }
        v = v << 4 | static_cast<uint64_t>(d);
    }
    return true;
}

int LatencySketch::index(double us) {
    double i = std::ceil(std::log(us) / kLogGamma);
    return static_cast<int>(std::clamp(i, double(kMinIndex), double(kMaxIndex)));
}

// Makes index i part of the array (never shrinks it).
void LatencySketch::grow(int i) {
    if (counts_.empty()) {
        offset_ = i;
        counts_.assign(1, 0);
        return;
    }
    if (i < offset_) {
        counts_.insert(counts_.begin(), static_cast<size_t>(offset_ - i), 0);
        offset_ = i;
    } else if (i >= offset_ + static_cast<int>(counts_.size())) {
        counts_.resize(static_cast<size_t>(i - offset_) + 1, 0);
    }
}

double LatencySketch::value(int index) {
    // The middle of the bucket (gamma^(i-1), gamma^i]: within alpha of every value in it.
    return 2.0 * std::pow(kGamma, index) / (kGamma + 1.0);
}

void LatencySketch::add(double us) {
    if (count_ == 0 || us < min_) {
        min_ = us;
    }
    max_ = std::max(max_, us);
    sum_ += us;
    ++count_;
    if (us < 0.001) {
        ++zero_;
        return;
    }
    int i = index(us);
    grow(i);
    ++counts_[static_cast<size_t>(i - offset_)];
}

void LatencySketch::merge(const LatencySketch& o) {
    if (o.count_ == 0) {
        return;
    }
    if (count_ == 0 || o.min_ < min_) {
        min_ = o.min_;
    }
    max_ = std::max(max_, o.max_);
    sum_ += o.sum_;
    count_ += o.count_;
    zero_ += o.zero_;
    if (o.counts_.empty()) {
        return;
    }
    grow(o.offset_);
    grow(o.offset_ + static_cast<int>(o.counts_.size()) - 1);
    for (size_t k = 0; k < o.counts_.size(); ++k) {
        counts_[static_cast<size_t>(o.offset_ - offset_) + k] += o.counts_[k];
    }
}

double LatencySketch::quantile(double q) const {
    if (count_ == 0) {
        return 0;
    }
    // Rank round(q * n + 0.5) with ties to even, clamped to [1, n]: the nearest-rank order
    // statistic as the reference decoder of tests/data/pcap computes it (no interpolation).
    double r = std::nearbyint(q * static_cast<double>(count_) + 0.5);
    auto rank = static_cast<uint64_t>(std::clamp(r, 1.0, static_cast<double>(count_)));
    if (rank == count_) {
        return max_;  // exact
    }
    uint64_t seen = zero_;
    if (rank <= seen) {
        return 0;
    }
    for (size_t k = 0; k < counts_.size(); ++k) {
        seen += counts_[k];
        if (seen >= rank) {
            return std::clamp(value(offset_ + static_cast<int>(k)), min_, max_);
        }
    }
    return max_;
}

std::string LatencySketch::json() const {
    std::ostringstream out;
    out << "{\"alpha\":" << kAlpha << ",\"zero\":" << zero_ << ",\"buckets\":[";
    bool first = true;
    forEach([&](int i, uint64_t c) {
        out << (first ? "" : ",") << '[' << i << ',' << c << ']';
        first = false;
    });
    out << "]}";
    return out.str();
}

void Breakdown::merge(const Breakdown& o) {
    count += o.count;
    errors += o.errors;
    latencySumUs += o.latencySumUs;
    errorLatencySumUs += o.errorLatencySumUs;
    noIndexUsed += o.noIndexUsed;
    noGoodIndexUsed += o.noGoodIndexUsed;
    slowFlag += o.slowFlag;
    lastSeen = std::max(lastSeen, o.lastSeen);
}

void TemplateStats::merge(const TemplateStats& o) {
    count += o.count;
    errors += o.errors;
    for (const auto& [code, c] : o.errorCodes) {
        if (errorCodes.count(code) != 0 || errorCodes.size() < kMaxErrorCodes) {
            errorCodes[code] += c;
        } else {
            otherErrors += c;
        }
    }
    otherErrors += o.otherErrors;
    for (const auto& [code, info] : o.errorInfo) {  // the one merged last is the latest
        if (errorCodes.count(code) != 0) {
            errorInfo[code] = info;
        }
    }
    lost += o.lost;
    latency.merge(o.latency);
    rowsReturned += o.rowsReturned;
    rowsAffected += o.rowsAffected;
    bytesIn += o.bytesIn;
    bytesOut += o.bytesOut;
    noIndexUsed += o.noIndexUsed;
    noGoodIndexUsed += o.noGoodIndexUsed;
    slowFlag += o.slowFlag;
    inTransaction += o.inTransaction;
    warnings += o.warnings;
    if (firstSeen == 0 || (o.firstSeen != 0 && o.firstSeen < firstSeen)) {
        firstSeen = o.firstSeen;
        if (!o.sample.empty()) {
            sample = o.sample;
        }
    }
    lastSeen = std::max(lastSeen, o.lastSeen);
    if (sample.empty()) {
        sample = o.sample;
    }
    slow.insert(slow.end(), o.slow.begin(), o.slow.end());
    std::sort(slow.begin(), slow.end(), [](const SlowSample& a, const SlowSample& b) {
        return a.us != b.us ? a.us > b.us : a.ts < b.ts;
    });
    if (slow.size() > kMaxSlow) {
        slow.resize(kMaxSlow);
    }
    clients.merge(o.clients);
    users.merge(o.users);
}

namespace {
// A server or schema name for the template table's hash: its length and its first and last
// 8 bytes, in constant time (every lookup of every command hashes two of them; equality still
// compares them whole, so names alike at both ends only share a bucket).
uint64_t nameHash(std::string_view s) {
    uint64_t head = 0;
    uint64_t tail = 0;
    std::memcpy(&head, s.data(), std::min<size_t>(s.size(), 8));
    if (s.size() > 8) {
        std::memcpy(&tail, s.data() + s.size() - std::min<size_t>(s.size() - 8, 8),
                    std::min<size_t>(s.size() - 8, 8));
    }
    uint64_t x = (head ^ (s.size() * 0x9e3779b97f4a7c15ULL)) * 0xd6e8feb86659fd93ULL;
    x = (x ^ (x >> 32) ^ tail) * 0xd6e8feb86659fd93ULL;
    return x ^ (x >> 32);
}
}  // namespace

size_t Section::KeyHash::operator()(const KeyView& k) const {
    uint64_t x = k.id * 0x9e3779b97f4a7c15ULL;
    x ^= nameHash(k.server) + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    x ^= nameHash(k.schema) + 0x9e3779b97f4a7c15ULL + (x << 6) + (x >> 2);
    return static_cast<size_t>(x);
}

TemplateStats* Section::find(std::string_view server, std::string_view schema, uint64_t id) {
    auto it = templates_.find(KeyView{server, schema, id});
    return it == templates_.end() ? nullptr : &it->second;
}

const TemplateStats* Section::find(std::string_view server, std::string_view schema,
                                   uint64_t id) const {
    auto it = templates_.find(KeyView{server, schema, id});
    return it == templates_.end() ? nullptr : &it->second;
}

TemplateStats* Section::findOrAdd(std::string_view server, std::string_view schema, uint64_t id) {
    auto it = templates_.find(KeyView{server, schema, id});
    if (it != templates_.end()) {
        return &it->second;
    }
    if (templates_.size() >= maxTemplates) {
        return nullptr;
    }
    TemplateStats t;
    t.id = id;
    t.server = server;
    t.schema = schema;
    return &templates_.emplace(Key{std::string(server), std::string(schema), id}, std::move(t))
                .first->second;
}

void Section::addUnresolved(std::string_view server, std::string_view schema, uint64_t n) {
    unresolved += n;
    auto key = std::make_pair(std::string(server), std::string(schema));
    auto it = unresolvedBy.find(key);
    if (it != unresolvedBy.end()) {
        it->second += n;
    } else if (unresolvedBy.size() < kMaxUnresolvedKeys) {
        unresolvedBy.emplace(std::move(key), n);
    }
}

void Section::merge(const Section& o) {
    for (const auto& [k, v] : o.commands) {
        commands[k] += v;
    }
    for (const auto& [k, v] : o.errorCodes) {
        errorCodes[k] += v;
    }
    errors += o.errors;
    rows += o.rows;
    lost += o.lost;
    evicted += o.evicted;
    uint64_t attributed = 0;
    for (const auto& [k, n] : o.unresolvedBy) {
        addUnresolved(k.first, k.second, n);
        attributed += n;
    }
    unresolved += o.unresolved - std::min(o.unresolved, attributed);
    for (const auto& [key, t] : o.templates_) {
        auto it = templates_.find(key);
        if (it != templates_.end()) {
            it->second.merge(t);
        } else if (templates_.size() < maxTemplates) {
            templates_.emplace(key, t);
        } else {
            evicted += t.count;
        }
    }
}

namespace {

void writeTemplate(std::ostream& out, const TemplateStats& t) {
    const LatencySketch& l = t.latency;
    out << "{\"fingerprint\":" << mp::jsonString(t.fingerprint) << ",\"id\":\"" << hex64(t.id)
        << "\",\"server\":" << mp::jsonString(t.server)
        << ",\"schema\":" << mp::jsonString(t.schema) << ",\"count\":" << t.count
        << ",\"errors\":" << t.errors << ",\"errors_by_code\":{";
    bool f2 = true;
    for (const auto& [code, c] : t.errorCodes) {
        out << (f2 ? "" : ",") << '"' << code << "\":" << c;
        f2 = false;
    }
    out << "},\"error_details\":{";
    f2 = true;
    for (const auto& [code, info] : t.errorInfo) {
        out << (f2 ? "" : ",") << '"' << code
            << "\":{\"sql_state\":" << mp::jsonString(info.sqlState)
            << ",\"message\":" << mp::jsonString(info.message) << "}";
        f2 = false;
    }
    out << "},\"other_errors\":" << t.otherErrors << ",\"lost\":" << t.lost
        << ",\"latency_us\":{\"p50\":" << formatTenths(l.quantile(0.5))
        << ",\"p95\":" << formatTenths(l.quantile(0.95))
        << ",\"p99\":" << formatTenths(l.quantile(0.99))
        << ",\"p999\":" << formatTenths(l.quantile(0.999)) << ",\"min\":" << formatExact(l.min())
        << ",\"max\":" << formatExact(l.max()) << ",\"sum\":" << formatExact(l.sum())
        << ",\"sketch\":" << l.json() << "},\"rows_returned\":" << t.rowsReturned
        << ",\"rows_affected\":" << t.rowsAffected << ",\"bytes_in\":" << t.bytesIn
        << ",\"bytes_out\":" << t.bytesOut << ",\"no_index_used\":" << t.noIndexUsed
        << ",\"no_good_index_used\":" << t.noGoodIndexUsed << ",\"query_was_slow\":" << t.slowFlag
        << ",\"in_transaction\":" << t.inTransaction << ",\"warnings\":" << t.warnings
        << ",\"first_seen_ns\":" << t.firstSeen << ",\"last_seen_ns\":" << t.lastSeen
        << ",\"sample\":" << mp::jsonString(t.sample) << ",\"slow\":[";
    bool f3 = true;
    for (const SlowSample& x : t.slow) {
        out << (f3 ? "" : ",") << "{\"latency_us\":" << formatExact(x.us)
            << ",\"sql\":" << mp::jsonString(x.sql) << ",\"client\":" << mp::jsonString(x.client)
            << ",\"client_port\":" << x.clientPort << ",\"conn_id\":" << x.connectionId
            << ",\"user\":" << mp::jsonString(x.user) << ",\"ts_ns\":" << x.ts
            << ",\"error_code\":" << x.errorCode << ",\"status_flags\":" << x.statusFlags
            << ",\"rows_affected\":" << x.rowsAffected
            << ",\"error_message\":" << mp::jsonString(x.errorMessage) << "}";
        f3 = false;
    }
    out << "],\"clients\":";
    breakdowns(out, t.clients, "addr");
    out << ",\"users\":";
    breakdowns(out, t.users, "user");
    out << "}";
}

}  // namespace

size_t TemplateStats::heapBytes() const {
    auto str = [](const std::string& x) { return x.capacity() > 15 ? x.capacity() + 1 : 0; };
    size_t n = sizeof(TemplateStats) + str(fingerprint) + str(server) + str(schema) + str(sample) +
               latency.heapBytes();
    constexpr size_t kMapNode = 48;  // a std::map node's links and colour
    n += errorCodes.size() * (kMapNode + 16);
    for (const auto& [code, info] : errorInfo) {
        n += kMapNode + sizeof(ErrorInfo) + str(info.sqlState) + str(info.message);
    }
    n += slow.capacity() * sizeof(SlowSample);
    for (const SlowSample& x : slow) {
        n += str(x.sql) + str(x.client) + str(x.user) + str(x.errorMessage);
    }
    for (const auto& [name, b] : clients.named) {
        n += sizeof(std::pair<std::string, Breakdown>) + str(name);
    }
    for (const auto& [name, b] : users.named) {
        n += sizeof(std::pair<std::string, Breakdown>) + str(name);
    }
    return n;
}

std::string TemplateStats::json() const {
    std::ostringstream out;
    writeTemplate(out, *this);
    return out.str();
}

size_t Section::heapBytes() const {
    size_t n = sizeof(Section) + (commands.size() + errorCodes.size() + unresolvedBy.size()) * 96;
    for (const auto& [k, t] : templates_) {
        n += t.heapBytes() + sizeof(Key) + k.server.capacity() + k.schema.capacity() + 32;
    }
    return n;
}

std::string Section::json() const {
    std::ostringstream out;
    out << "\"totals\":{\"commands\":{";
    bool first = true;
    uint64_t total = 0;
    for (const auto& [k, v] : commands) {
        out << (first ? "" : ",") << mp::jsonString(k) << ':' << v;
        total += v;
        first = false;
    }
    out << "},\"commands_total\":" << total << ",\"errors\":" << errors << ",\"errors_by_code\":{";
    first = true;
    for (const auto& [k, v] : errorCodes) {
        out << (first ? "" : ",") << '"' << k << "\":" << v;
        first = false;
    }
    out << "},\"rows_returned\":" << rows << ",\"lost_responses\":" << lost
        << ",\"templates_evicted\":" << evicted << ",\"unresolved_executes\":" << unresolved
        << ",\"unresolved_by_schema\":[";
    first = true;
    for (const auto& [k, n] : unresolvedBy) {
        out << (first ? "" : ",") << "{\"server\":" << mp::jsonString(k.first)
            << ",\"schema\":" << mp::jsonString(k.second) << ",\"executes\":" << n << "}";
        first = false;
    }
    out << "]},\"templates\":[";
    // Most total time first: what an operator looks at.
    std::vector<const TemplateStats*> order;
    for (const auto& [k, t] : templates_) {
        order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const TemplateStats* a, const TemplateStats* b) {
        if (a->latency.sum() != b->latency.sum()) {
            return a->latency.sum() > b->latency.sum();
        }
        return a->fingerprint < b->fingerprint;
    });
    first = true;
    for (const TemplateStats* t : order) {
        out << (first ? "" : ",");
        writeTemplate(out, *t);
        first = false;
    }
    out << "]";
    return out.str();
}

uint64_t readU64(const Poco::JSON::Object::Ptr& o, const char* key, bool required) {
    if (!o->has(key)) {
        if (required) {
            throw std::runtime_error(std::string("report: missing ") + key);
        }
        return 0;
    }
    const Poco::Dynamic::Var& v = o->get(key);
    if (!v.isNumeric() || v.isEmpty()) {
        throw std::runtime_error(std::string("report: ") + key + ": not a number");
    }
    double d = v.convert<double>();
    if (!(d >= 0) || d > 1.8e19) {
        throw std::runtime_error(std::string("report: ") + key + ": out of range");
    }
    return v.isInteger() ? v.convert<uint64_t>() : static_cast<uint64_t>(d);
}

// ---- back from JSON (a report of another node) -------------------------------------------

namespace {

using Poco::JSON::Array;
using Poco::JSON::Object;

[[noreturn]] void bad(const std::string& what) { throw std::runtime_error("report: " + what); }

// Typed getters that name the field they refuse (readU64, public, and these).
double f64(const Object::Ptr& o, const char* key) {
    if (!o->has(key)) {
        bad(std::string("missing ") + key);
    }
    const Poco::Dynamic::Var& v = o->get(key);
    if (!v.isNumeric() || v.isEmpty()) {
        bad(std::string(key) + ": not a number");
    }
    double d = v.convert<double>();
    if (!std::isfinite(d) || d < 0) {
        bad(std::string(key) + ": out of range");
    }
    return d;
}
std::string text(const Object::Ptr& o, const char* key, size_t maxLen = 1 << 20) {
    if (!o->has(key) || !o->get(key).isString()) {
        bad(std::string(key) + ": not a string");
    }
    std::string s = o->getValue<std::string>(key);
    if (s.size() > maxLen) {
        bad(std::string(key) + ": too long");
    }
    return s;
}
Object::Ptr object(const Object::Ptr& o, const char* key) {
    Object::Ptr p = o->has(key) ? o->getObject(key) : nullptr;
    if (p.isNull()) {
        bad(std::string(key) + ": not an object");
    }
    return p;
}
Array::Ptr array(const Object::Ptr& o, const char* key, bool required = true) {
    Array::Ptr p = o->has(key) ? o->getArray(key) : nullptr;
    if (p.isNull() && required) {
        bad(std::string(key) + ": not an array");
    }
    return p;
}
Object::Ptr element(const Array::Ptr& a, size_t i, const char* what) {
    Object::Ptr p = a->getObject(static_cast<unsigned>(i));
    if (p.isNull()) {
        bad(std::string(what) + ": an element is not an object");
    }
    return p;
}
uint16_t code(const std::string& s) {
    char* end = nullptr;
    unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || v > 65535) {
        bad("error code: " + s);
    }
    return static_cast<uint16_t>(v);
}

Breakdown breakdownOf(const Object::Ptr& b) {
    Breakdown out;
    out.count = readU64(b, "count");
    out.errors = readU64(b, "errors");
    out.latencySumUs = f64(b, "latency_sum_us");
    out.errorLatencySumUs = f64(b, "error_latency_sum_us");
    out.noIndexUsed = readU64(b, "no_index_used");
    out.noGoodIndexUsed = readU64(b, "no_good_index_used");
    out.slowFlag = readU64(b, "query_was_slow");
    out.lastSeen = readU64(b, "last_seen_ns");
    return out;
}

template <size_t Max>
void breakdownsOf(const Array::Ptr& a, const char* field, BreakdownSet<Max>& set) {
    for (size_t i = 0; a && i < a->size(); ++i) {
        Object::Ptr b = element(a, i, field);
        Breakdown one = breakdownOf(b);
        if (b->has("other")) {
            set.other.merge(one);
        } else {
            set.at(text(b, field, 1024)).merge(one);
        }
    }
}

}  // namespace

bool LatencySketch::restore(uint64_t zero, const std::vector<std::pair<int, uint64_t>>& buckets,
                            double min, double max, double sum) {
    LatencySketch s;
    s.zero_ = zero;
    s.count_ = zero;
    for (const auto& [i, c] : buckets) {
        if (i < kMinIndex || i > kMaxIndex || c == 0 || s.count_ + c < s.count_) {
            return false;
        }
        s.grow(i);
        s.counts_[static_cast<size_t>(i - s.offset_)] += c;
        s.count_ += c;
    }
    if (min > max || (s.count_ == 0 && (min != 0 || max != 0 || sum != 0))) {
        return false;
    }
    s.min_ = min;
    s.max_ = max;
    s.sum_ = sum;
    *this = std::move(s);
    return true;
}

Section Section::fromJson(const Poco::JSON::Object::Ptr& report, size_t maxTemplates) {
    Section s;
    s.maxTemplates = maxTemplates;
    if (report.isNull()) {
        bad("not an object");
    }
    Object::Ptr totals = object(report, "totals");
    Object::Ptr commands = object(totals, "commands");
    for (const std::string& name : commands->getNames()) {
        if (name.size() > 64) {
            bad("command name too long");
        }
        s.commands[name] += readU64(commands, name.c_str());
    }
    s.errors = readU64(totals, "errors");
    Object::Ptr byCode = object(totals, "errors_by_code");
    for (const std::string& c : byCode->getNames()) {
        s.errorCodes[code(c)] += readU64(byCode, c.c_str());
    }
    s.rows = readU64(totals, "rows_returned");
    s.lost = readU64(totals, "lost_responses");
    s.evicted = readU64(totals, "templates_evicted");
    s.unresolved = readU64(totals, "unresolved_executes", false);  // since decoder-mysql 0.2.0
    if (Array::Ptr by = array(totals, "unresolved_by_schema", false); !by.isNull()) {
        uint64_t attributed = 0;  // since mysqlprobe 0.6.0
        for (size_t i = 0; i < by->size() && i < Section::kMaxUnresolvedKeys; ++i) {
            Object::Ptr e = element(by, i, "unresolved_by_schema");
            uint64_t n = readU64(e, "executes");
            if (n > s.unresolved - attributed) {  // no sum that could wrap
                bad("unresolved_by_schema: more than unresolved_executes");
            }
            auto key = std::make_pair(text(e, "server", 256), text(e, "schema", 1024));
            s.unresolvedBy[key] += n;
            attributed += n;
        }
    }
    Array::Ptr templates = array(report, "templates");
    for (size_t i = 0; i < templates->size(); ++i) {
        Object::Ptr o = element(templates, i, "templates");
        std::string idText = text(o, "id", 16);
        uint64_t id = 0;
        if (!parseHex64(idText, id)) {
            bad("id: not 16 hex digits: " + idText);
        }
        std::string server = text(o, "server", 256);
        std::string schema = text(o, "schema", 1024);
        TemplateStats t;
        t.fingerprint = text(o, "fingerprint");
        t.id = id;
        t.server = server;
        t.schema = schema;
        t.count = readU64(o, "count");
        t.errors = readU64(o, "errors");
        Object::Ptr codes = object(o, "errors_by_code");
        for (const std::string& c : codes->getNames()) {
            uint16_t k = code(c);
            if (t.errorCodes.count(k) != 0 || t.errorCodes.size() < TemplateStats::kMaxErrorCodes) {
                t.errorCodes[k] += readU64(codes, c.c_str());
            } else {
                t.otherErrors += readU64(codes, c.c_str());
            }
        }
        t.otherErrors += readU64(o, "other_errors");
        if (o->has("error_details")) {  // since mysqlprobe 0.6.0
            Object::Ptr details = object(o, "error_details");
            for (const std::string& c : details->getNames()) {
                uint16_t k = code(c);
                Object::Ptr d = object(details, c.c_str());
                if (t.errorCodes.count(k) != 0) {
                    t.errorInfo[k] = ErrorInfo{text(d, "sql_state", 5),
                                               boundedMessage(text(d, "message", 1024))};
                }
            }
        }
        t.lost = readU64(o, "lost");
        Object::Ptr lat = object(o, "latency_us");
        Object::Ptr sk = object(lat, "sketch");
        std::vector<std::pair<int, uint64_t>> buckets;
        Array::Ptr b = array(sk, "buckets");
        if (b->size() >
            2 * static_cast<size_t>(LatencySketch::kMaxIndex - LatencySketch::kMinIndex + 1)) {
            bad("sketch: too many buckets");
        }
        for (size_t k = 0; k < b->size(); ++k) {
            Array::Ptr pair = b->getArray(static_cast<unsigned>(k));
            if (pair.isNull() || pair->size() != 2 || !pair->get(0).isInteger() ||
                !pair->get(1).isInteger()) {
                bad("sketch: a bucket is not [index, count]");
            }
            auto index = pair->get(0).convert<int64_t>();
            auto count = pair->get(1).convert<int64_t>();
            if (index < LatencySketch::kMinIndex || index > LatencySketch::kMaxIndex ||
                count <= 0) {
                bad("sketch: bucket out of range");
            }
            buckets.emplace_back(static_cast<int>(index), static_cast<uint64_t>(count));
        }
        if (!t.latency.restore(readU64(sk, "zero"), buckets, f64(lat, "min"), f64(lat, "max"),
                               f64(lat, "sum"))) {
            bad("sketch: inconsistent");
        }
        t.rowsReturned = readU64(o, "rows_returned");
        t.rowsAffected = readU64(o, "rows_affected");
        t.bytesIn = readU64(o, "bytes_in");
        t.bytesOut = readU64(o, "bytes_out");
        t.noIndexUsed = readU64(o, "no_index_used");
        t.noGoodIndexUsed = readU64(o, "no_good_index_used");
        t.slowFlag = readU64(o, "query_was_slow");
        t.inTransaction = readU64(o, "in_transaction");
        t.warnings = readU64(o, "warnings");
        t.firstSeen = readU64(o, "first_seen_ns");
        t.lastSeen = readU64(o, "last_seen_ns");
        t.sample = text(o, "sample");
        Array::Ptr slow = array(o, "slow");
        for (size_t k = 0; k < slow->size() && k < TemplateStats::kMaxSlow; ++k) {
            Object::Ptr x = element(slow, k, "slow");
            SlowSample q;
            q.us = f64(x, "latency_us");
            q.sql = text(x, "sql");
            q.client = text(x, "client", 256);
            // Since decoder-mysql 0.2.0.
            q.clientPort =
                static_cast<uint16_t>(std::min<uint64_t>(readU64(x, "client_port", false), 65535));
            q.connectionId = static_cast<uint32_t>(
                std::min<uint64_t>(readU64(x, "conn_id", false), 0xffffffffULL));
            q.user = text(x, "user", 1024);
            q.ts = readU64(x, "ts_ns");
            q.errorCode =
                static_cast<uint16_t>(std::min<uint64_t>(readU64(x, "error_code"), 65535));
            q.statusFlags =
                static_cast<uint16_t>(std::min<uint64_t>(readU64(x, "status_flags"), 65535));
            q.rowsAffected = readU64(x, "rows_affected");
            if (x->has("error_message")) {  // since mysqlprobe 0.6.0
                q.errorMessage = boundedMessage(text(x, "error_message", 1024));
            }
            t.slow.push_back(std::move(q));
        }
        breakdownsOf(array(o, "clients", false), "addr", t.clients);
        breakdownsOf(array(o, "users", false), "user", t.users);
        auto it = s.templates_.find(KeyView{server, schema, id});
        if (it != s.templates_.end()) {
            it->second.merge(t);
        } else if (s.templates_.size() < s.maxTemplates) {
            s.templates_.emplace(Key{server, schema, id}, std::move(t));
        } else {
            s.evicted += t.count;
        }
    }
    return s;
}

}  // namespace mp::report
