// SPDX-License-Identifier: Apache-2.0
// The console's page, script and style, built into the plugin (cmake/embed.cmake).
#pragma once

#include <cstddef>

namespace mp::console {

struct Asset {
    const char* path;  // the route: "/", "/console/app.js"
    const unsigned char* data;
    size_t size;
};

/// Ends with an entry whose path is nullptr.
extern const Asset kAssets[];

}  // namespace mp::console
