// SPDX-License-Identifier: Apache-2.0
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mp/mysql_inbound.hpp>
#include <mp/sdk.hpp>

namespace mp::mysql::inbound {
namespace {

constexpr char kMagic[4] = {'M', 'P', 'I', static_cast<char>(kVersion)};
// Flags of the binary form.
constexpr uint8_t kTruncated = 1;
constexpr uint8_t kLoginUnknown = 2;
constexpr uint8_t kTls = 4;
constexpr uint8_t kCompressed = 8;
constexpr uint8_t kLoginFailed = 16;
constexpr uint8_t kGapFromServer = 32;
constexpr size_t kFixed = 4 + 4 + 4 + 4 + 4 + 2 + 2 + 8 * 7;  // magic .. gap bytes

const char* const kTypes[] = {"", "command", "connect", "close", "gap"};
const char* const kOutcomes[] = {"none", "ok", "error", "resultset", "prepared", "lost"};

void put(std::string& out, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        out += static_cast<char>((v >> (8 * i)) & 0xff);
    }
}
void putString(std::string& out, std::string_view s) {
    put(out, s.size(), 4);
    out.append(s);
}

// A bounds-checked cursor over the binary form.
struct Reader {
    const uint8_t* p;
    size_t n;
    size_t off = 0;
    bool ok = true;
    uint64_t get(size_t k) {
        if (!ok || n - off < k) {
            ok = false;
            return 0;
        }
        uint64_t v = 0;
        for (size_t i = 0; i < k; ++i) {
            v |= uint64_t{p[off + i]} << (8 * i);
        }
        off += k;
        return v;
    }
    void str(std::string& out) {
        uint64_t len = get(4);
        if (!ok || n - off < len) {
            ok = false;
            return;
        }
        out.assign(reinterpret_cast<const char*>(p + off), static_cast<size_t>(len));
        off += static_cast<size_t>(len);
    }
};

void field(std::string& out, const char* name) {
    out += ",\"";
    out += name;
    out += "\":";
}
void num(std::string& out, const char* name, uint64_t v) {
    field(out, name);
    out += std::to_string(v);
}
void str(std::string& out, const char* name, std::string_view v) {
    field(out, name);
    appendJsonString(out, v);
}
void boolean(std::string& out, const char* name, bool v) {
    field(out, name);
    out += v ? "true" : "false";
}

// One binary record from the start of `payload`; `used` its length (the rest may be more
// records of a batch).
bool parseBinaryAt(std::string_view payload, Record& r, std::string& error, size_t& used) {
    Reader in{reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
    if (payload.size() < kFixed || std::memcmp(payload.data(), kMagic, 3) != 0) {
        error = "not a binary inbound record (magic MPI)";
        return false;
    }
    if (static_cast<uint8_t>(payload[3]) != kVersion) {
        error = "binary inbound record of version " +
                std::to_string(static_cast<uint8_t>(payload[3])) + ", this reads version 1";
        return false;
    }
    in.off = 4;
    const auto type = static_cast<uint8_t>(in.get(1));
    r.command = static_cast<uint8_t>(in.get(1));
    const auto outcome = static_cast<uint8_t>(in.get(1));
    const auto flags = static_cast<uint8_t>(in.get(1));
    if (type < 1 || type > 4 || outcome > 5) {
        error = "binary inbound record: unknown type or outcome";
        return false;
    }
    r.type = static_cast<Type>(type);
    r.outcome = static_cast<Outcome>(outcome);
    r.truncated = (flags & kTruncated) != 0;
    r.loginKnown = (flags & kLoginUnknown) == 0;
    r.tls = (flags & kTls) != 0;
    r.compressed = (flags & kCompressed) != 0;
    r.loginFailed = (flags & kLoginFailed) != 0;
    r.gapFromServer = (flags & kGapFromServer) != 0;
    r.connectionId = static_cast<uint32_t>(in.get(4));
    r.statementId = static_cast<uint32_t>(in.get(4));
    r.clientFlags = static_cast<uint32_t>(in.get(4));
    r.errorCode = static_cast<uint16_t>(in.get(2));
    r.collation = static_cast<uint16_t>(in.get(2));
    r.n = in.get(8);
    r.ts = in.get(8);
    r.responseTs = in.get(8);
    r.rows = in.get(8);
    r.affectedRows = in.get(8);
    r.templateId = in.get(8);
    r.gapBytes = in.get(8);
    for (std::string* s :
         {&r.client, &r.server, &r.user, &r.schema, &r.sqlState, &r.errorMessage, &r.sql,
          &r.templateText, &r.serverVersion, &r.reason, &r.commandName, &r.bytes}) {
        in.str(*s);
    }
    if (!in.ok) {
        error = "binary inbound record: damaged (a length runs past the end)";
        return false;
    }
    used = in.off;
    return true;
}

bool parseBinary(std::string_view payload, Record& r, std::string& error) {
    size_t used = 0;
    if (!parseBinaryAt(payload, r, error, used)) {
        return false;
    }
    if (used != payload.size()) {
        error = "binary inbound record: bytes follow the record";
        return false;
    }
    return true;
}

uint64_t u64(const Poco::JSON::Object& o, const char* k) {
    if (!o.has(k)) {
        return 0;
    }
    Poco::Dynamic::Var v = o.get(k);
    if (v.isString()) {
        return std::stoull(v.toString(), nullptr, 16);  // 64-bit ids are hex strings
    }
    return v.convert<uint64_t>();
}
std::string text(const Poco::JSON::Object& o, const char* k) {
    return o.has(k) && !o.isNull(k) ? o.getValue<std::string>(k) : std::string();
}
bool flag(const Poco::JSON::Object& o, const char* k) { return o.has(k) && o.getValue<bool>(k); }

bool parseJson(std::string_view payload, Record& r, std::string& error) {
    Poco::JSON::Object::Ptr o;
    try {
        Poco::JSON::Parser parser;
        o = parser.parse(std::string(payload)).extract<Poco::JSON::Object::Ptr>();
    } catch (const std::exception& e) {
        error = std::string("inbound record: not a JSON object: ") + e.what();
        return false;
    }
    try {
        if (u64(*o, "v") != kVersion) {
            error = "inbound record of version " + text(*o, "v") + ", this reads version 1";
            if (!o->has("v")) {
                error = "inbound record without a version (\"v\")";
            }
            return false;
        }
        const std::string type = text(*o, "type");
        r.type = Type::Command;
        bool known = false;
        for (uint8_t t = 1; t <= 4; ++t) {
            if (type == kTypes[t]) {
                r.type = static_cast<Type>(t);
                known = true;
            }
        }
        if (!known) {
            error = "inbound record of unknown type '" + type + "'";
            return false;
        }
        r.client = text(*o, "client");
        r.server = text(*o, "server");
        r.connectionId = static_cast<uint32_t>(u64(*o, "connection_id"));
        r.n = u64(*o, "n");
        r.ts = u64(*o, "ts");
        r.loginKnown = !(o->has("user") && o->isNull("user"));
        r.user = text(*o, "user");
        r.schema = text(*o, "schema");
        r.command = static_cast<uint8_t>(u64(*o, "command_code"));
        r.commandName = text(*o, "command");
        r.bytes.clear();
        if (o->has("bytes") && !decodeBase64(text(*o, "bytes"), r.bytes)) {
            error = "inbound record: \"bytes\" is not base64";
            return false;
        }
        r.truncated = flag(*o, "truncated");
        r.statementId = static_cast<uint32_t>(u64(*o, "statement_id"));
        r.sql = text(*o, "sql");
        r.templateId = u64(*o, "template_id");
        r.templateText = text(*o, "template");
        r.outcome = Outcome::None;
        if (auto res = o->getObject("result"); res) {
            const std::string oc = text(*res, "outcome");
            for (uint8_t k = 0; k <= 5; ++k) {
                if (oc == kOutcomes[k]) {
                    r.outcome = static_cast<Outcome>(k);
                }
            }
            r.errorCode = static_cast<uint16_t>(u64(*res, "error_code"));
            r.sqlState = text(*res, "sql_state");
            r.errorMessage = text(*res, "error_message");
            r.rows = u64(*res, "rows");
            r.affectedRows = u64(*res, "affected_rows");
            r.responseTs = u64(*res, "response_ts");
        } else {
            r.errorCode = static_cast<uint16_t>(u64(*o, "error_code"));
        }
        r.serverVersion = text(*o, "server_version");
        r.clientFlags = static_cast<uint32_t>(u64(*o, "client_flags"));
        r.collation = static_cast<uint16_t>(u64(*o, "collation"));
        r.tls = flag(*o, "tls");
        r.compressed = flag(*o, "compressed");
        r.loginFailed = flag(*o, "failed");
        r.reason = text(*o, "reason");
        r.gapFromServer = text(*o, "direction") == "server";
        r.gapBytes = u64(*o, "bytes_missing");
    } catch (const std::exception& e) {
        error = std::string("inbound record: a field has the wrong type: ") + e.what();
        return false;
    }
    return true;
}

}  // namespace

const char* typeName(Type t) {
    auto i = static_cast<size_t>(t);
    return i >= 1 && i <= 4 ? kTypes[i] : "unknown";
}

const char* outcomeName(Outcome o) {
    auto i = static_cast<size_t>(o);
    return i <= 5 ? kOutcomes[i] : "unknown";
}

void appendJson(const Record& r, std::string& out) {
    out += "{\"v\":1";
    str(out, "type", typeName(r.type));
    str(out, "client", r.client);
    str(out, "server", r.server);
    num(out, "connection_id", r.connectionId);
    num(out, "n", r.n);
    num(out, "ts", r.ts);
    auto login = [&] {
        if (r.loginKnown) {
            str(out, "user", r.user);
            str(out, "schema", r.schema);
        } else {
            out += ",\"user\":null,\"schema\":null";
        }
    };
    switch (r.type) {
        case Type::Command: {
            login();
            str(out, "command", r.commandName);
            num(out, "command_code", r.command);
            field(out, "bytes");
            out += '"';
            appendBase64(out, reinterpret_cast<const uint8_t*>(r.bytes.data()), r.bytes.size());
            out += '"';
            if (r.truncated) {
                boolean(out, "truncated", true);
            }
            if (r.statementId != 0) {
                num(out, "statement_id", r.statementId);
            }
            if (!r.sql.empty()) {
                str(out, "sql", r.sql);
            }
            if (r.templateId != 0) {
                char id[20];
                std::snprintf(id, sizeof id, "%016" PRIx64, r.templateId);
                str(out, "template_id", id);
                str(out, "template", r.templateText);
            }
            out += ",\"result\":{\"outcome\":\"";
            out += outcomeName(r.outcome);
            out += '"';
            if (r.outcome == Outcome::Error) {
                num(out, "error_code", r.errorCode);
                str(out, "sql_state", r.sqlState);
                str(out, "error_message", r.errorMessage);
            }
            num(out, "rows", r.rows);
            num(out, "affected_rows", r.affectedRows);
            if (r.responseTs != 0) {
                num(out, "response_ts", r.responseTs);
                num(out, "latency_us", r.responseTs > r.ts ? (r.responseTs - r.ts) / 1000 : 0);
            }
            out += '}';
            break;
        }
        case Type::Connect:
            login();
            str(out, "server_version", r.serverVersion);
            num(out, "client_flags", r.clientFlags);
            num(out, "collation", r.collation);
            boolean(out, "tls", r.tls);
            boolean(out, "compressed", r.compressed);
            boolean(out, "failed", r.loginFailed);
            if (r.loginFailed) {
                num(out, "error_code", r.errorCode);
            }
            break;
        case Type::Close:
            str(out, "reason", r.reason);
            break;
        case Type::Gap:
            str(out, "direction", r.gapFromServer ? "server" : "client");
            num(out, "bytes_missing", r.gapBytes);
            break;
    }
    out += '}';
}

void appendBinary(const Record& r, std::string& out) {
    out.append(kMagic, sizeof kMagic);
    put(out, static_cast<uint8_t>(r.type), 1);
    put(out, r.command, 1);
    put(out, static_cast<uint8_t>(r.outcome), 1);
    put(out,
        (r.truncated ? kTruncated : 0) | (r.loginKnown ? 0 : kLoginUnknown) | (r.tls ? kTls : 0) |
            (r.compressed ? kCompressed : 0) | (r.loginFailed ? kLoginFailed : 0) |
            (r.gapFromServer ? kGapFromServer : 0),
        1);
    put(out, r.connectionId, 4);
    put(out, r.statementId, 4);
    put(out, r.clientFlags, 4);
    put(out, r.errorCode, 2);
    put(out, r.collation, 2);
    for (uint64_t v : {r.n, r.ts, r.responseTs, r.rows, r.affectedRows, r.templateId, r.gapBytes}) {
        put(out, v, 8);
    }
    for (const std::string* s :
         {&r.client, &r.server, &r.user, &r.schema, &r.sqlState, &r.errorMessage, &r.sql,
          &r.templateText, &r.serverVersion, &r.reason, &r.commandName, &r.bytes}) {
        putString(out, *s);
    }
}

bool parseBatch(std::string_view payload, std::string_view contentType, std::vector<Record>& out,
                std::string& error) {
    const size_t before = out.size();
    auto fail = [&] {
        out.resize(before);
        return false;
    };
    const bool magic = payload.size() >= 3 && std::memcmp(payload.data(), kMagic, 3) == 0;
    if (contentType == kBinaryContentType ||
        ((contentType.empty() || contentType == "application/octet-stream") && magic)) {
        while (!payload.empty()) {
            size_t used = 0;
            out.emplace_back();
            if (!parseBinaryAt(payload, out.back(), error, used)) {
                return fail();
            }
            payload.remove_prefix(used);
        }
        return true;
    }
    // JSON: one record per line (a JSON string never holds a raw newline).
    while (!payload.empty()) {
        size_t nl = payload.find('\n');
        std::string_view line = payload.substr(0, nl);
        payload.remove_prefix(nl == std::string_view::npos ? payload.size() : nl + 1);
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
            continue;
        }
        out.emplace_back();
        if (!parseJson(line, out.back(), error)) {
            return fail();
        }
    }
    return true;
}

bool parse(std::string_view payload, std::string_view contentType, Record& out,
           std::string& error) {
    out = Record{};
    const bool magic = payload.size() >= 3 && std::memcmp(payload.data(), kMagic, 3) == 0;
    if (contentType == kBinaryContentType ||
        ((contentType.empty() || contentType == "application/octet-stream") && magic)) {
        return parseBinary(payload, out, error);
    }
    return parseJson(payload, out, error);
}

}  // namespace mp::mysql::inbound
