// SPDX-License-Identifier: Apache-2.0
// Helpers of the HTTP server that hold no state: form and query decoding, header tokens, the
// methods of a route and its Allow header, the role gate, dates and JSON error bodies.
// parseQuery(), public, is declared in server/http_server.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "server/auth.hpp"

namespace mp::host {

// application/x-www-form-urlencoded decoding of one name or value; false on a broken escape.
bool percentDecode(std::string_view in, std::string& res);

// Drops "name=..." from a query string (the access token never reaches a plugin).
std::string stripParam(const std::string& q, std::string_view name);

// {"error": msg} as JSON.
std::string errorJson(const std::string& msg);

// ASCII case-insensitive equality (header names and tokens).
bool iequals(std::string_view a, std::string_view b);

/// A request path a handler may trust: it begins with '/', has no "." or ".." segment, no empty
/// segment but a last one ("/console/"), no '\\' or control character, and no percent-encoded
/// '.', '/' or '\\'.
bool plainPath(std::string_view path);

// Whether a comma-separated header value (such as Connection) holds `token`, any case.
bool listHas(std::string_view value, std::string_view token);

// Whether a route accepting `methods` (MP_HTTP_*) takes method `m` (HEAD wherever GET).
bool methodAllowed(uint32_t methods, const std::string& m);

// The Allow header of a route accepting `methods`.
std::string allowHeader(uint32_t methods);

// The access rule of a route or an endpoint against its caller: 0 when allowed, else the
// status to answer (401: no token, or one that matches none; 403: a role too low).
int gate(const Caller& caller, uint32_t need);

// The message of a 401 or 403 from gate().
std::string gateMessage(int status, uint32_t need);

// The current time as an HTTP Date header value.
std::string httpDate();

}  // namespace mp::host
