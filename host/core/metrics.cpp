// SPDX-License-Identifier: Apache-2.0
#include "core/metrics.hpp"

#include <sstream>

namespace mp::host {

std::string metricName(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c >= 'A' && c <= 'Z') {
            out += static_cast<char>(c - 'A' + 'a');
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
            out += c;
        } else {
            out += '_';
        }
    }
    return out;
}

mp_counter* Metrics::get(const std::string& owner, const std::string& name, const std::string& help,
                         uint32_t kind) {
    std::string full = "mysqlprobe_" + metricName(owner) + "_" + metricName(name);
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = counters_[full];
    if (!slot) {
        slot = std::make_unique<mp_counter>();
        slot->name = full;
        slot->help = help;
        slot->kind = kind == MP_GAUGE ? MP_GAUGE : MP_COUNTER;
    }
    return slot.get();
}

std::string Metrics::prometheus() const {
    std::ostringstream out;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, c] : counters_) {
        std::string help = c->help;
        for (char& ch : help) {
            if (ch == '\n') {
                ch = ' ';
            }
        }
        out << "# HELP " << name << ' ' << help << '\n';
        out << "# TYPE " << name << ' ' << (c->kind == MP_GAUGE ? "gauge" : "counter") << '\n';
        out << name << ' ' << c->value.load(std::memory_order_relaxed) << '\n';
    }
    return out.str();
}

std::string Metrics::json() const {
    std::ostringstream out;
    out << '{';
    bool first = true;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, c] : counters_) {
        out << (first ? "" : ",") << '"' << name.substr(11)
            << "\":" << c->value.load(std::memory_order_relaxed);
        first = false;
    }
    out << '}';
    return out.str();
}

int64_t Metrics::value(const std::string& fullName) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = counters_.find(fullName);
    return it == counters_.end() ? -1 : it->second->value.load();
}

}  // namespace mp::host
