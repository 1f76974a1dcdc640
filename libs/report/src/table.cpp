// SPDX-License-Identifier: Apache-2.0
// A report as a readable table: the capture line, the totals and the top templates by total time.
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <iomanip>
#include <sstream>

#include "mp/report.hpp"

namespace mp::report {

std::string table(const std::string& json, size_t top) {
    std::ostringstream out;
    try {
        Poco::JSON::Parser parser;
        auto r = parser.parse(json).extract<Poco::JSON::Object::Ptr>();
        auto c = r->getObject("capture");
        if (c) {
            out << "capture: " << c->getValue<int64_t>("packets") << " packets, "
                << c->getObject("connections")->getValue<int64_t>("opened") << " connections, "
                << c->getValue<int64_t>("stream_bytes") << " stream bytes, "
                << c->getValue<int64_t>("gap_bytes") << " bytes missing\n";
        }
        auto totals = r->getObject("totals");
        if (totals) {
            out << "commands:";
            auto cmds = totals->getObject("commands");
            for (const auto& [k, v] : *cmds) {
                out << ' ' << k << '=' << v.convert<std::string>();
            }
            out << "\nerrors: " << totals->getValue<int64_t>("errors")
                << ", rows returned: " << totals->getValue<int64_t>("rows_returned");
            // What is in no template, when anything is.
            for (const auto& [key, what] :
                 {std::pair<const char*, const char*>{"lost_responses", "responses lost"},
                  {"templates_evicted", "not aggregated (template table full)"},
                  {"unresolved_executes", "executes of unknown statements"}}) {
                int64_t v = totals->optValue<int64_t>(key, 0);
                if (v != 0) {
                    out << ", " << what << ": " << v;
                }
            }
            out << "\n";
            // decoder-mysql's comparison with the server's own counters, when it reads them.
            auto cov = r->getObject("coverage");
            if (cov) {
                out << "coverage of " << cov->optValue<std::string>("server", "?") << ": ";
                auto total = cov->getObject("total");
                auto q = total ? total->getObject("questions") : nullptr;
                if (q) {
                    out << q->getValue<int64_t>("seen") << " of the "
                        << q->getValue<int64_t>("counted")
                        << " questions the server counted were seen (ratio "
                        << (cov->isNull("ratio") ? std::string("n/a")
                                                 : cov->get("ratio").convert<std::string>())
                        << ")";
                } else {
                    out << "no comparison yet";
                }
                if (cov->has("error")) {
                    out << "; last reading: " << cov->getValue<std::string>("error");
                }
                out << "\n";
            }
            out << "\n";
        }
        auto templates = r->getArray("templates");
        if (!templates) {
            return out.str() + "(no decoder: no templates)\n";
        }
        out << std::right << std::setw(7) << "count" << std::setw(7) << "errors" << std::setw(11)
            << "total_ms" << std::setw(10) << "p50_us" << std::setw(10) << "p95_us" << std::setw(10)
            << "p99_us" << std::setw(11) << "max_us" << std::setw(9) << "rows"
            << "  fingerprint\n";
        for (size_t i = 0; i < templates->size() && i < top; ++i) {
            auto t = templates->getObject(static_cast<unsigned>(i));
            auto l = t->getObject("latency_us");
            std::string fp = t->getValue<std::string>("fingerprint");
            if (fp.size() > 90) {
                fp = fp.substr(0, 87) + "...";
            }
            out << std::setw(7) << t->getValue<int64_t>("count") << std::setw(7)
                << t->getValue<int64_t>("errors") << std::setw(11) << std::fixed
                << std::setprecision(1) << l->getValue<double>("sum") / 1000.0 << std::setw(10)
                << l->getValue<double>("p50") << std::setw(10) << l->getValue<double>("p95")
                << std::setw(10) << l->getValue<double>("p99") << std::setw(11)
                << l->getValue<double>("max") << std::setw(9)
                << t->getValue<int64_t>("rows_returned") << "  " << fp << "\n";
        }
        if (templates->size() > top) {
            out << "(" << templates->size() - top << " more templates: use --format json)\n";
        }
    } catch (const std::exception& e) {
        out << "(cannot render the report as a table: " << e.what() << ")\n";
    }
    return out.str();
}

}  // namespace mp::report
