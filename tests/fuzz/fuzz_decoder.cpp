// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the MySQL session decoder (framing, compression, handshake, every response
// parser), fed direction-tagged chunks cut from the input, with gaps, as the stream layer does.
#include <cstddef>
#include <cstdint>

#include "session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) {
        return 0;
    }
    uint64_t emitted = 0;
    mp::mysql::SessionLimits lim;
    lim.maxSql = 64;
    lim.maxStatements = 4;
    lim.maxPending = 8;
    mp::mysql::Session s(lim, (data[0] & 1) != 0, [&](const mp::mysql::Transaction& tx) {
        ++emitted;
        if (tx.sql.size() > lim.maxSql || tx.errorMessage.size() > 512) {
            __builtin_trap();  // bounds on kept text
        }
    });
    size_t pos = 1;
    uint64_t ts = 0;
    // Chunks: one control byte (direction, gap, length), then that many bytes.
    while (pos < size) {
        uint8_t c = data[pos++];
        uint32_t dir = c & 1;
        size_t len = static_cast<size_t>(c >> 2) + 1;
        if (pos + len > size) {
            len = size - pos;
        }
        if ((c & 2) != 0 && (c >> 2) == 63) {
            s.gap(dir, len, ++ts);
            continue;
        }
        s.data(dir, data + pos, len, ++ts);
        pos += len;
    }
    s.close(++ts);
    (void)emitted;
    return 0;
}
