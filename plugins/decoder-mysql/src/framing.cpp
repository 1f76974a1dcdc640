// SPDX-License-Identifier: Apache-2.0
#include "framing.hpp"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace mp::mysql {

void Framer::reset() {
    headerHave_ = 0;
    wireLeft_ = 0;
    inPacket_ = false;
    continues_ = false;
    payload_.clear();
    length_ = 0;
    cbuf_.clear();
}

bool Framer::inflate(const uint8_t* body, uint32_t clen, uint32_t ulen) {
    inflated_.resize(ulen);
    uLongf out = ulen;
    int rc = uncompress(inflated_.data(), &out, body, clen);
    if (rc != Z_OK || out != ulen) {
        ++decompressErrors_;
        cbuf_.clear();
        return false;
    }
    return true;
}

}  // namespace mp::mysql
