// SPDX-License-Identifier: Apache-2.0
#include "encode.hpp"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/MD5Engine.h>
#include <mp/abi.h>
#include <snappy.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <mp/hostport.hpp>
#include <mp/sdk.hpp>
#include <set>
#include <stdexcept>
#include <vector>

namespace mp::ws {

namespace {

using Poco::JSON::Array;
using Poco::JSON::Object;

// Milliseconds as the original writes them (float32): three decimals are more than it keeps.
std::string ms(double us) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.3f", us / 1000.0);
    return buf;
}

template <class T>
T num(const Object::Ptr& o, const char* key, T fallback = 0) {
    if (o.isNull() || !o->has(key) || o->isNull(key)) {
        return fallback;
    }
    return o->getValue<T>(key);
}

std::string str(const Object::Ptr& o, const char* key) {
    if (o.isNull() || !o->has(key) || o->isNull(key)) {
        return {};
    }
    return o->getValue<std::string>(key);
}

// The counters of a summary (a template, or one client's share of it).
struct Share {
    uint64_t ok = 0;
    uint64_t failed = 0;
    uint64_t lastSeen = 0;
    double okUs = 0;
    double failedUs = 0;
    uint64_t noGoodIndex = 0;
    uint64_t noIndex = 0;
    uint64_t slowFlag = 0;
};

Share shareOf(const Object::Ptr& b) {
    Share s;
    uint64_t count = num<uint64_t>(b, "count");
    s.failed = num<uint64_t>(b, "errors");
    s.ok = count >= s.failed ? count - s.failed : 0;
    s.lastSeen = num<uint64_t>(b, "last_seen_ns");
    s.okUs = num<double>(b, "latency_sum_us");
    s.failedUs = num<double>(b, "error_latency_sum_us");
    s.noGoodIndex = num<uint64_t>(b, "no_good_index_used");
    s.noIndex = num<uint64_t>(b, "no_index_used");
    s.slowFlag = num<uint64_t>(b, "query_was_slow");
    return s;
}

void writeShare(std::string& out, const Share& s) {
    out += ",\"c\":" + std::to_string(s.ok) + ",\"d\":" + std::to_string(s.failed) +
           ",\"e\":" + std::to_string(s.lastSeen) + ",\"f\":" + ms(s.okUs) +
           ",\"g\":" + ms(s.failedUs) + ",\"h\":" + std::to_string(s.noGoodIndex) +
           ",\"i\":" + std::to_string(s.noIndex) + ",\"j\":" + std::to_string(s.slowFlag);
}

// One slow query as the original's Message.
std::string slowMessage(const Object::Ptr& s) {
    double us = num<double>(s, "latency_us");
    uint64_t ts = num<uint64_t>(s, "ts_ns");
    auto code = num<uint64_t>(s, "error_code");
    std::string out =
        "{\"c\":" + mp::jsonString(str(s, "sql")) + ",\"d\":" + (code != 0 ? "true" : "false");
    if (code != 0) {
        std::string message = str(s, "error_message");
        if (!message.empty()) {
            out += ",\"e\":" + mp::jsonString(message);
        }
        out += ",\"f\":" + std::to_string(code);
    }
    out += ",\"g\":" + std::to_string(num<uint64_t>(s, "status_flags")) +
           ",\"h\":" + std::to_string(num<uint64_t>(s, "rows_affected")) +
           ",\"i\":" + std::to_string(ts) +
           ",\"j\":" + std::to_string(ts + static_cast<uint64_t>(std::llround(us * 1000.0))) +
           ",\"k\":" + ms(us) + ",\"n\":" + mp::jsonString(str(s, "client")) + "}";
    return out;
}

struct ClientSummaries {
    std::vector<std::string> summaries;
};

struct Assembly {
    std::string schema;
    std::string ip;
    uint64_t lastSeen = 0;
    std::vector<std::string> summaries;               // d
    std::map<std::string, ClientSummaries> byClient;  // e
    uint64_t unknownExec = 0;                         // f
};

}  // namespace

std::optional<std::string> toMysqlProbeV1(std::string_view nativeJson) {
    Poco::JSON::Parser parser;
    Object::Ptr root;
    try {
        root = parser.parse(std::string(nativeJson)).extract<Object::Ptr>();
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("report is not JSON: ") + e.what());
    }
    if (root.isNull() || !root->has("templates")) {
        return std::nullopt;  // a report without a decoder section: nothing the original knows
    }
    Array::Ptr templates = root->getArray("templates");
    if (templates.isNull()) {
        return std::nullopt;
    }
    // Executes of statements prepared before the capture, by the session's (server, schema).
    Array::Ptr unresolved;
    if (Object::Ptr totals = root->getObject("totals"); !totals.isNull()) {
        unresolved = totals->getArray("unresolved_by_schema");
    }
    const size_t unresolvedCount = unresolved.isNull() ? 0 : unresolved->size();
    if (templates->size() == 0 && unresolvedCount == 0) {
        return std::nullopt;
    }
    double seconds = 0;
    if (Object::Ptr iv = root->getObject("interval"); !iv.isNull()) {
        auto start = num<uint64_t>(iv, "start_ns");
        auto end = num<uint64_t>(iv, "end_ns");
        seconds = end > start ? static_cast<double>(end - start) / 1e9 : 0;
    }
    // The original keys its report by schema alone; two servers with one schema name would
    // overwrite each other there, so they get "schema|server ip" keys here.
    std::map<std::string, std::set<std::string>> serversOfSchema;
    for (size_t i = 0; i < templates->size(); ++i) {
        Object::Ptr t = templates->getObject(static_cast<unsigned>(i));
        serversOfSchema[str(t, "schema")].insert(mp::net::hostOf(str(t, "server")));
    }
    for (size_t i = 0; i < unresolvedCount; ++i) {
        Object::Ptr u = unresolved->getObject(static_cast<unsigned>(i));
        serversOfSchema[str(u, "schema")].insert(mp::net::hostOf(str(u, "server")));
    }
    std::map<std::string, Assembly> report;
    auto assembly = [&](const std::string& schema, const std::string& ip) -> Assembly& {
        std::string key = serversOfSchema[schema].size() > 1 ? schema + "|" + ip : schema;
        Assembly& a = report[key];
        a.schema = schema;
        a.ip = ip;
        return a;
    };
    for (size_t i = 0; i < unresolvedCount; ++i) {
        Object::Ptr u = unresolved->getObject(static_cast<unsigned>(i));
        assembly(str(u, "schema"), mp::net::hostOf(str(u, "server"))).unknownExec +=
            num<uint64_t>(u, "executes");
    }
    for (size_t i = 0; i < templates->size(); ++i) {
        Object::Ptr t = templates->getObject(static_cast<unsigned>(i));
        Assembly& a = assembly(str(t, "schema"), mp::net::hostOf(str(t, "server")));
        std::string id = md5Hex(str(t, "fingerprint"));
        // The template's own summary: the clients' shares summed (they carry the split of the
        // latency between succeeded and failed commands), plus rates and percentiles.
        Share all;
        all.failed = num<uint64_t>(t, "errors");
        uint64_t count = num<uint64_t>(t, "count");
        all.ok = count >= all.failed ? count - all.failed : 0;
        all.lastSeen = num<uint64_t>(t, "last_seen_ns");
        all.noGoodIndex = num<uint64_t>(t, "no_good_index_used");
        all.noIndex = num<uint64_t>(t, "no_index_used");
        all.slowFlag = num<uint64_t>(t, "query_was_slow");
        a.lastSeen = std::max(a.lastSeen, all.lastSeen);
        Array::Ptr clients = t->getArray("clients");
        Array::Ptr slow = t->getArray("slow");
        for (size_t k = 0; !clients.isNull() && k < clients->size(); ++k) {
            Object::Ptr c = clients->getObject(static_cast<unsigned>(k));
            Share s = shareOf(c);
            all.okUs += s.okUs;
            all.failedUs += s.failedUs;
            std::string addr = c->has("addr") ? str(c, "addr") : std::string("other");
            std::string summary = "{\"a\":" + mp::jsonString(id);
            writeShare(summary, s);
            std::string slowOfClient;
            for (size_t j = 0; !slow.isNull() && j < slow->size(); ++j) {
                Object::Ptr q = slow->getObject(static_cast<unsigned>(j));
                if (str(q, "client") == addr) {
                    slowOfClient += (slowOfClient.empty() ? "" : ",") + slowMessage(q);
                }
            }
            if (!slowOfClient.empty()) {
                summary += ",\"p\":[" + slowOfClient + "]";
            }
            summary += "}";
            a.byClient[addr].summaries.push_back(std::move(summary));
        }
        std::string summary =
            "{\"a\":" + mp::jsonString(id) + ",\"b\":" + mp::jsonString(str(t, "fingerprint"));
        writeShare(summary, all);
        Object::Ptr lat = t->getObject("latency_us");
        uint64_t timed = count - std::min(count, num<uint64_t>(t, "lost"));
        if (seconds > 0) {
            summary +=
                ",\"k\":" + std::to_string(std::llround(static_cast<double>(count) / seconds));
        }
        if (timed != 0 && !lat.isNull()) {
            summary += ",\"l\":" + ms(num<double>(lat, "sum") / static_cast<double>(timed)) +
                       ",\"m\":" + ms(num<double>(lat, "min")) +
                       ",\"n\":" + ms(num<double>(lat, "max")) +
                       ",\"o\":" + ms(num<double>(lat, "p99"));
        }
        summary += "}";
        a.summaries.push_back(std::move(summary));
    }
    std::string out = "{";
    bool first = true;
    for (const auto& [key, a] : report) {
        out += (first ? "" : ",") + mp::jsonString(key) + ":{\"a\":" + mp::jsonString(a.schema) +
               ",\"b\":" + mp::jsonString(a.ip) + ",\"c\":" + std::to_string(a.lastSeen) +
               ",\"d\":[";
        for (size_t i = 0; i < a.summaries.size(); ++i) {
            out += (i == 0 ? "" : ",") + a.summaries[i];
        }
        out += "],\"e\":[";
        bool firstClient = true;
        for (const auto& [addr, cs] : a.byClient) {
            out += (firstClient ? "" : ",") + std::string("{\"a\":") + mp::jsonString(addr) +
                   ",\"b\":[";
            for (size_t i = 0; i < cs.summaries.size(); ++i) {
                out += (i == 0 ? "" : ",") + cs.summaries[i];
            }
            out += "]}";
            firstClient = false;
        }
        out += "],\"f\":" + std::to_string(a.unknownExec) + "}";
        first = false;
    }
    out += "}";
    return out;
}

std::string md5Hex(const std::string& text) {
    Poco::MD5Engine md5;
    md5.update(text);
    return Poco::DigestEngine::digestToHex(md5.digest());
}

std::string snappyCompress(std::string_view in) {
    std::string out;
    snappy::Compress(in.data(), in.size(), &out);
    return out;
}

bool snappyUncompress(std::string_view in, std::string& out, size_t maxOut) {
    size_t n = 0;
    if (!snappy::GetUncompressedLength(in.data(), in.size(), &n) || n > maxOut) {
        return false;
    }
    return snappy::Uncompress(in.data(), in.size(), &out);
}

std::optional<mp::push::Encoded> encodeReport(std::string_view nativeJson, Format f,
                                              Compression c) {
    if (f == Format::MysqlProbeV1) {
        std::optional<std::string> v1 = toMysqlProbeV1(nativeJson);
        if (!v1) {
            return std::nullopt;
        }
        return mp::push::Encoded{MP_WS_BINARY,
                                 snappyCompress(*v1)};  // always snappy, as the original
    }
    if (c == Compression::Snappy) {
        return mp::push::Encoded{MP_WS_BINARY, snappyCompress(nativeJson)};
    }
    return mp::push::Encoded{MP_WS_TEXT, std::string(nativeJson)};
}

}  // namespace mp::ws
