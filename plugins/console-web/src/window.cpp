// SPDX-License-Identifier: Apache-2.0
#include "window.hpp"

#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <mp/sdk.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace mp::console {

namespace {

using Poco::JSON::Object;

// The capture object's counters, nested objects flattened with '.', at most 256 of them.
void flatten(const Object::Ptr& o, const std::string& prefix, int depth,
             std::vector<std::pair<std::string, uint64_t>>& out) {
    if (o.isNull() || depth > 2) {
        return;
    }
    for (const std::string& name : o->getNames()) {
        if (out.size() >= 256 || name.size() > 64) {
            return;
        }
        if (Object::Ptr inner = o->getObject(name); !inner.isNull()) {
            flatten(inner, prefix + name + ".", depth + 1, out);
        } else if (o->get(name).isNumeric()) {
            out.emplace_back(prefix + name, report::readU64(o, name.c_str(), false));
        }
    }
}

uint64_t captured(const Held& h, std::string_view name) {
    for (const auto& [k, v] : h.capture) {
        if (k == name) {
            return v;
        }
    }
    return 0;
}

// The questions figures of a report's `coverage` (decoder-mysql): anything else is left.
void readCoverage(const Poco::JSON::Object::Ptr& c, Held::Coverage& out) {
    if (c.isNull()) {
        return;
    }
    out.present = true;
    if (c->has("server") && c->get("server").isString()) {
        out.server = c->getValue<std::string>("server").substr(0, 256);
    }
    if (c->has("error") && c->get("error").isString()) {
        out.error = c->getValue<std::string>("error").substr(0, 512);
    }
    auto questions = [](const Poco::JSON::Object::Ptr& figures) {
        return figures.isNull() ? Poco::JSON::Object::Ptr() : figures->getObject("questions");
    };
    if (auto q = questions(c->getObject("total")); !q.isNull()) {
        out.seen = report::readU64(q, "seen", false);
        out.counted = report::readU64(q, "counted", false);
    }
    if (auto q = questions(c->getObject("interval")); !q.isNull()) {
        out.interval = true;
        out.intervalSeen = report::readU64(q, "seen", false);
        out.intervalCounted = report::readU64(q, "counted", false);
    }
}

// A report's share of a cumulative capture counter: the difference with the report before it
// (none: a run's first report; a smaller value: the node restarted; both count from zero).
uint64_t share(const Held& now, const Held* before, std::string_view name) {
    const uint64_t n = captured(now, name);
    const uint64_t b = before != nullptr ? captured(*before, name) : 0;
    return n >= b ? n - b : n;
}

bool containsNoCase(std::string_view hay, std::string_view needle) {
    if (needle.empty()) {
        return true;
    }
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(),
                          [&](char a, char b) { return lower(a) == lower(b); });
    return it != hay.end();
}

// What the capture lost before the stream layer: kernel, interface and the probe's own queues.
const char* const kDropCounters[] = {"kernel_dropped", "interface_dropped", "probe_dropped"};

void writeStrings(std::ostream& out, const std::set<std::string>& list) {
    out << '[';
    bool first = true;
    for (const auto& s : list) {
        out << (first ? "" : ",") << mp::jsonString(s);
        first = false;
    }
    out << ']';
}

uint64_t rowsOf(const report::TemplateStats& t) { return t.rowsReturned + t.rowsAffected; }

}  // namespace

std::shared_ptr<const Held> parseReport(const std::string& json, size_t maxTemplates) {
    Poco::JSON::Parser parser;
    Object::Ptr o;
    try {
        o = parser.parse(json).extract<Object::Ptr>();
    } catch (const Poco::BadCastException&) {
        throw std::runtime_error("report: not an object");
    } catch (const Poco::Exception& e) {
        throw std::runtime_error("report: not JSON: " + e.message());
    }
    if (o.isNull()) {
        throw std::runtime_error("report: not an object");
    }
    auto h = std::make_shared<Held>();
    h->seq = report::readU64(o, "seq", false);
    if (Object::Ptr interval = o->getObject("interval"); !interval.isNull()) {
        h->startNs = report::readU64(interval, "start_ns", false);
        h->endNs = report::readU64(interval, "end_ns", false);
    }
    if (o->has("node") && o->get("node").isString()) {
        h->node = o->getValue<std::string>("node").substr(0, 256);
    }
    h->section = report::Section::fromJson(o, maxTemplates);
    flatten(o->getObject("capture"), "", 0, h->capture);
    readCoverage(o->getObject("coverage"), h->coverage);
    h->bytes = sizeof(Held) + h->section.heapBytes() + h->node.capacity() +
               h->coverage.server.capacity() + h->coverage.error.capacity();
    for (const auto& [k, v] : h->capture) {
        h->bytes += sizeof(std::pair<std::string, uint64_t>) + k.capacity();
    }
    return h;
}

void Window::add(std::shared_ptr<const Held> r) {
    uint64_t drops = 0;
    for (const char* k : kDropCounters) {
        drops += share(*r, held_.empty() ? nullptr : held_.back().get(), k);
    }
    bytes_ += r->bytes;
    held_.push_back(std::move(r));
    drops_.push_back(drops);
    // The bound covers the reports and their merge (whose size the last merge tells).
    while (held_.size() > 1 &&
           (held_.size() > maxIntervals_ || bytes_ + windowBytes_ > maxBytes_)) {
        bytes_ -= held_.front()->bytes;
        held_.pop_front();
        drops_.pop_front();
        ++dropped_;
    }
    auto merged = std::make_shared<report::Section>();
    merged->maxTemplates = SIZE_MAX;  // each report is already bounded; the union is what it is
    for (const auto& h : held_) {
        merged->merge(h->section);
    }
    windowBytes_ = merged->heapBytes();
    window_ = std::move(merged);
}

std::string Window::series(const report::TemplateStats& t) const {
    std::string out = "[";
    bool first = true;
    for (const auto& h : held_) {
        const report::TemplateStats* s = h->section.find(t.server, t.schema, t.id);
        out += first ? "[" : ",[";
        first = false;
        if (s == nullptr || s->count == 0) {
            out += "0,null,null]";
        } else {
            out += std::to_string(s->count) + "," + report::formatTenths(s->latency.quantile(0.5)) +
                   "," + report::formatTenths(s->latency.quantile(0.99)) + "]";
        }
    }
    return out + "]";
}

std::string Window::capture() const {
    if (held_.empty()) {
        return "null";
    }
    const Held& last = *held_.back();
    const Held* prev = held_.size() >= 2 ? held_[held_.size() - 2].get() : nullptr;
    std::ostringstream out;
    out << "{\"total\":{";
    bool first = true;
    for (const auto& [k, v] : last.capture) {
        out << (first ? "" : ",") << mp::jsonString(k) << ':' << v;
        first = false;
    }
    out << "},\"interval\":{";
    first = true;
    for (const auto& [k, v] : last.capture) {
        out << (first ? "" : ",") << mp::jsonString(k) << ':' << share(last, prev, k);
        first = false;
    }
    out << "}";
    uint64_t dropsWindow = 0;
    for (uint64_t d : drops_) {
        dropsWindow += d;
    }
    const uint64_t dropsInterval = drops_.back();
    out << ",\"drops_interval\":" << dropsInterval << ",\"drops_window\":" << dropsWindow
        << ",\"gap_bytes_interval\":" << share(last, prev, "gap_bytes") << ",\"coverage\":";
    const Held::Coverage& c = last.coverage;
    if (!c.present) {
        out << "null";
    } else {
        out << "{\"server\":" << mp::jsonString(c.server) << ",\"seen\":" << c.seen
            << ",\"counted\":" << c.counted;
        if (c.interval) {
            out << ",\"interval_seen\":" << c.intervalSeen
                << ",\"interval_counted\":" << c.intervalCounted;
        }
        if (!c.error.empty()) {
            out << ",\"error\":" << mp::jsonString(c.error);
        }
        out << "}";
    }
    out << "}";
    return out.str();
}

std::string Window::state(const Query& q) const {
    std::ostringstream out;
    const Held* last = held_.empty() ? nullptr : held_.back().get();
    const report::Section* section =
        q.view == View::Last ? (last != nullptr ? &last->section : nullptr) : window_.get();
    std::vector<const report::TemplateStats*> rows;
    std::set<std::string> servers;
    std::set<std::string> schemas;
    size_t total = 0;
    if (section != nullptr) {
        section->forEachTemplate([&](const report::TemplateStats& t) {
            ++total;
            if (servers.size() < 256) {
                servers.insert(t.server);
            }
            if (schemas.size() < 256) {
                schemas.insert(t.schema);
            }
            if ((q.server.empty() || t.server == q.server) &&
                (q.schema.empty() || t.schema == q.schema) &&
                containsNoCase(t.fingerprint, q.text)) {
                rows.push_back(&t);
            }
        });
    }
    auto key = [&](const report::TemplateStats* t) -> double {
        switch (q.sort) {
            case Sort::Count:
                return static_cast<double>(t->count);
            case Sort::P99:
                return t->latency.quantile(0.99);
            case Sort::Errors:
                return static_cast<double>(t->errors);
            case Sort::Rows:
                return static_cast<double>(rowsOf(*t));
            case Sort::TotalTime:
                break;
        }
        return t->latency.sum();
    };
    std::vector<std::pair<double, const report::TemplateStats*>> keyed;
    keyed.reserve(rows.size());
    for (const auto* t : rows) {
        keyed.emplace_back(key(t), t);
    }
    auto order = [](const auto& a, const auto& b) {
        if (a.first != b.first) {
            return a.first > b.first;
        }
        if (a.second->fingerprint != b.second->fingerprint) {
            return a.second->fingerprint < b.second->fingerprint;
        }
        return std::tie(a.second->server, a.second->schema) <
               std::tie(b.second->server, b.second->schema);
    };
    const size_t shown = std::min(q.limit, keyed.size());
    std::partial_sort(keyed.begin(), keyed.begin() + static_cast<std::ptrdiff_t>(shown),
                      keyed.end(), order);
    out << "{\"node\":" << mp::jsonString(last != nullptr ? last->node : "")
        << ",\"seq\":" << (last != nullptr ? last->seq : 0) << ",\"view\":\""
        << (q.view == View::Last ? "last" : "window") << "\",\"intervals\":[";
    bool first = true;
    for (const auto& h : held_) {
        out << (first ? "" : ",") << "{\"seq\":" << h->seq << ",\"start_ns\":" << h->startNs
            << ",\"end_ns\":" << h->endNs << "}";
        first = false;
    }
    out << "],\"templates_total\":" << total << ",\"matched\":" << rows.size()
        << ",\"held_bytes\":" << heldBytes() << ",\"reports_dropped\":" << dropped_
        << ",\"servers\":";
    writeStrings(out, servers);
    out << ",\"schemas\":";
    writeStrings(out, schemas);
    out << ",\"rows\":[";
    for (size_t i = 0; i < shown; ++i) {
        const report::TemplateStats& t = *keyed[i].second;
        const report::LatencySketch& l = t.latency;
        out << (i == 0 ? "" : ",") << "{\"id\":\"" << report::hex64(t.id)
            << "\",\"server\":" << mp::jsonString(t.server)
            << ",\"schema\":" << mp::jsonString(t.schema)
            << ",\"fingerprint\":" << mp::jsonString(t.fingerprint) << ",\"count\":" << t.count
            << ",\"errors\":" << t.errors << ",\"rows\":" << rowsOf(t)
            << ",\"total_us\":" << report::formatExact(l.sum())
            << ",\"p50\":" << report::formatTenths(l.quantile(0.5))
            << ",\"p99\":" << report::formatTenths(l.quantile(0.99))
            << ",\"max\":" << report::formatExact(l.max()) << ",\"series\":" << series(t) << "}";
    }
    out << "],\"capture\":" << capture() << "}";
    return out.str();
}

std::optional<std::string> Window::detail(const std::string& server, const std::string& schema,
                                          uint64_t id) const {
    const report::TemplateStats* inWindow =
        window_ != nullptr ? window_->find(server, schema, id) : nullptr;
    if (inWindow == nullptr) {
        return std::nullopt;
    }
    const report::TemplateStats* inLast =
        held_.empty() ? nullptr : held_.back()->section.find(server, schema, id);
    std::string out = "{\"window\":" + inWindow->json() +
                      ",\"last\":" + (inLast != nullptr ? inLast->json() : std::string("null")) +
                      ",\"series\":" + series(*inWindow) + "}";
    return out;
}

}  // namespace mp::console
