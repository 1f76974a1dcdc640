// SPDX-License-Identifier: Apache-2.0
// Routing-key templates: "{name}" is replaced by a value; "{{" and "}}" are literal braces.
// Parsed once from the configuration, rendered for every message without allocation beyond the
// key itself.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mp::amqp {

/// The placeholders a template may use.
enum class Var { Node, Type, Seq, Stream, Key, Producer, Count };

/// Values of the placeholders for one message, by Var.
using Values = std::array<std::string_view, static_cast<size_t>(Var::Count)>;

class RoutingTemplate {
  public:
    /// The parsed template, or nullopt with `why`: an unclosed or unknown placeholder, a lone
    /// '}', or over 255 bytes of literal text (AMQP's limit for a routing key).
    static std::optional<RoutingTemplate> parse(std::string_view text, std::string& why);
    /// The key for these values, cut to 255 bytes.
    std::string render(const Values& values) const;

  private:
    struct Part {
        std::string literal;  // used when var is Count
        Var var = Var::Count;
    };
    std::vector<Part> parts_;
};

}  // namespace mp::amqp
