// SPDX-License-Identifier: Apache-2.0
// Counters and gauges kept by the host and the plugins; rendered for /metrics and reports.
#pragma once

#include <mp/abi.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct mp_counter {
    std::string name;  // full metric name: mysqlprobe_<owner>_<name>
    std::string help;
    uint32_t kind = MP_COUNTER;
    std::atomic<int64_t> value{0};
};

namespace mp::host {

class Metrics {
  public:
    /// Returns the counter of that owner and name, creating it on first use.
    /// Names are sanitised to [a-z0-9_].
    mp_counter* get(const std::string& owner, const std::string& name, const std::string& help,
                    uint32_t kind);

    /// Prometheus text exposition format (version 0.0.4), sorted by name.
    std::string prometheus() const;
    /// {"owner_name": value, ...} as a JSON object text, sorted.
    std::string json() const;
    /// Value by full name, or -1 when absent (tests).
    int64_t value(const std::string& fullName) const;

  private:
    mutable std::mutex mutex_;
    std::map<std::string, std::unique_ptr<mp_counter>> counters_;
};

/// Lower-cases and maps anything outside [a-z0-9_] to '_'.
std::string metricName(const std::string& s);

}  // namespace mp::host
