// SPDX-License-Identifier: Apache-2.0
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <mp/report.hpp>
#include <mp/report_merge.hpp>
#include <mp/sdk.hpp>
#include <sstream>

namespace mp::report {

namespace {

Poco::JSON::Object::Ptr parse(const std::string& json) {
    Poco::JSON::Parser p;
    return p.parse(json).extract<Poco::JSON::Object::Ptr>();
}

}  // namespace

bool reportIdentity(const std::string& json, Identity& id) {
    try {
        Poco::JSON::Object::Ptr o = parse(json);
        if (o.isNull() || !o->has("node") || !o->get("node").isString() || !o->has("seq") ||
            !o->get("seq").isInteger() || !o->has("started_ns") ||
            !o->get("started_ns").isInteger()) {
            return false;
        }
        id.node = o->getValue<std::string>("node");
        id.seq = o->getValue<uint64_t>("seq");
        id.started = o->getValue<uint64_t>("started_ns");
        Poco::JSON::Object::Ptr iv = o->getObject("interval");
        id.intervalEnd = !iv.isNull() && iv->has("end_ns") && iv->get("end_ns").isInteger()
                             ? iv->getValue<uint64_t>("end_ns")
                             : 0;
        id.final = o->has("final") && o->get("final").isBoolean() && o->getValue<bool>("final");
        return !id.node.empty() && id.node.size() <= 256 && id.seq != 0;
    } catch (const std::exception&) {
        return false;
    }
}

std::string encodeResentNotice(const ResentNotice& n) {
    std::string out = "{\"resent\":" + std::to_string(n.seq) + ",\"unacked_by\":[";
    for (size_t i = 0; i < n.unackedBy.size(); ++i) {
        out += (i == 0 ? "" : ",") + mp::jsonString(n.unackedBy[i]);
    }
    return out + "]}";
}

bool parseResentNotice(const std::string& json, ResentNotice& n) {
    if (json.rfind("{\"resent\":", 0) != 0 || json.size() > 4096) {
        return false;  // reports start with {"version": only notices are parsed here
    }
    try {
        Poco::JSON::Object::Ptr o = parse(json);
        if (o.isNull() || !o->has("resent") || !o->get("resent").isInteger()) {
            return false;
        }
        Poco::JSON::Array::Ptr by = o->getArray("unacked_by");
        if (by.isNull() || by->size() > 8) {
            return false;
        }
        n.seq = o->getValue<uint64_t>("resent");
        n.unackedBy.clear();
        for (size_t i = 0; i < by->size(); ++i) {
            if (!by->get(i).isString()) {
                return false;
            }
            std::string s = by->getElement<std::string>(static_cast<unsigned>(i));
            if (s.empty() || s.size() > 256) {
                return false;
            }
            for (char c : s) {  // a server address (host:port): printable ASCII, no spaces
                if (c <= ' ' || c > '~') {
                    return false;
                }
            }
            n.unackedBy.push_back(std::move(s));
        }
        return n.seq != 0;
    } catch (const std::exception&) {
        return false;
    }
}

MergeResult mergeReports(const std::string& own, const std::vector<Incoming>& in,
                         const std::vector<std::string>& missing, size_t maxTemplates) {
    MergeResult r;
    Poco::JSON::Object::Ptr root = parse(own);
    report::Section merged;
    merged.maxTemplates = maxTemplates;
    if (root->has("totals") && root->has("templates")) {
        merged = report::Section::fromJson(root, maxTemplates);
    }
    std::ostringstream contributors;
    bool first = true;
    for (const Incoming& i : in) {
        try {
            merged.merge(report::Section::fromJson(parse(i.json), maxTemplates));
        } catch (const std::exception&) {
            ++r.rejected;
            continue;
        }
        ++r.merged;
        contributors << (first ? "" : ",") << "{\"node\":" << mp::jsonString(i.node)
                     << ",\"addr\":" << mp::jsonString(i.addr) << ",\"started_ns\":" << i.started
                     << ",\"seq\":" << i.seq << "}";
        first = false;
    }
    root->remove("totals");
    root->remove("templates");
    std::ostringstream out;
    Poco::JSON::Stringifier::stringify(root, out);
    std::string head = out.str();
    head.pop_back();  // the closing brace: the merged members follow
    std::ostringstream tail;
    tail << (head.size() > 1 ? "," : "") << "\"cluster\":{\"role\":\"master\",\"contributors\":["
         << contributors.str() << "],\"missing\":[";
    for (size_t k = 0; k < missing.size(); ++k) {
        tail << (k == 0 ? "" : ",") << mp::jsonString(missing[k]);
    }
    tail << "],\"rejected\":" << r.rejected << "}," << merged.json() << "}";
    r.json = head + tail.str();
    return r;
}

}  // namespace mp::report
