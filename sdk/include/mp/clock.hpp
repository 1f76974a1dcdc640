// SPDX-License-Identifier: Apache-2.0
// The one wall clock of the host and the plugins. Header-only.
#pragma once

#include <chrono>
#include <cstdint>

namespace mp {

/// Wall clock, ns since the Unix epoch: report and record times, never durations (use
/// std::chrono::steady_clock for those: the wall clock can step).
inline uint64_t wallClockNs() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

}  // namespace mp
