// SPDX-License-Identifier: Apache-2.0
// Routing-key templates: "{name}" is replaced by a value; "{{" and "}}" are literal braces.
#pragma once

#include <map>
#include <string>

namespace mp::amqp {

/// False (with `why`) for an unclosed or unknown placeholder, or a key over 255 bytes of
/// literal text (AMQP's limit for a routing key).
bool validTemplate(const std::string& tmpl, std::string& why);
/// The template with every placeholder replaced (unknown names give ""); cut to 255 bytes.
std::string expand(const std::string& tmpl, const std::map<std::string, std::string>& values);

}  // namespace mp::amqp
