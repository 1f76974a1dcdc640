// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <mp/clock.hpp>

namespace mp::host {

using mp::wallClockNs;  // report times, mp_host_api.now_ns

}  // namespace mp::host
