// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the mysql.inbound record parser (libs/mysql), both forms. What parses must
// encode and parse back to the same record, in both forms.
#include <cstddef>
#include <cstdint>
#include <mp/mysql_inbound.hpp>
#include <string>
#include <vector>

using namespace mp::mysql::inbound;

namespace {

void again(const Record& r) {
    std::string json, bin, error;
    appendJson(r, json);
    appendBinary(r, bin);
    Record a, b;
    if (!parse(bin, kBinaryContentType, b, error) || b.bytes != r.bytes || b.n != r.n ||
        b.sql != r.sql || b.type != r.type) {
        __builtin_trap();
    }
    // JSON carries each type's own fields: a command's exact bytes (base64) and numbers; text
    // fields may change once (bytes that are not UTF-8 read as Latin-1), so they are not
    // compared.
    if (!parse(json, kJsonContentType, a, error) || a.n != r.n || a.type != r.type) {
        __builtin_trap();
    }
    if (r.type == Type::Command &&
        (a.bytes != r.bytes || a.rows != r.rows || a.templateId != r.templateId)) {
        __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    Record r;
    std::string error;
    if (parse(in, kBinaryContentType, r, error)) {
        again(r);
    }
    if (parse(in, kJsonContentType, r, error)) {
        again(r);
    }
    std::vector<Record> batch;
    for (std::string_view type : {kBinaryContentType, kJsonBatchContentType}) {
        batch.clear();
        if (parseBatch(in, type, batch, error)) {
            for (const Record& one : batch) {
                again(one);
            }
        } else if (!batch.empty()) {
            __builtin_trap();  // a refused batch leaves nothing behind
        }
    }
    return 0;
}
