// SPDX-License-Identifier: Apache-2.0
#include "server/ws_frame.hpp"

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>
#include <Poco/SHA1Engine.h>

#include <mp/sdk.hpp>
#include <sstream>

namespace mp::host::ws {

namespace {

Event error(uint16_t code, std::string why) {
    Event e;
    e.kind = Event::Kind::Error;
    e.code = code;
    e.why = std::move(why);
    return e;
}

bool validCloseCode(uint16_t c) {
    // RFC 6455 7.4: 1000-1003, 1007-1011 (and 1012-1014 registered since), 3000-4999.
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

}  // namespace

bool validUtf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        size_t n = mp::utf8SequenceLength(s, i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

size_t Reader::next(std::string_view in, Event& ev) {
    ev = Event{};
    size_t used = 0;
    while (true) {
        std::string_view b = in.substr(used);
        if (b.size() < 2) {
            return used;
        }
        auto b0 = static_cast<uint8_t>(b[0]);
        auto b1 = static_cast<uint8_t>(b[1]);
        bool fin = (b0 & 0x80) != 0;
        uint8_t op = b0 & 0x0f;
        if ((b0 & 0x70) != 0) {
            ev = error(1002, "reserved bits set");
            return used;
        }
        if ((b1 & 0x80) == 0) {
            ev = error(1002, "unmasked client frame");
            return used;
        }
        bool control = (op & 0x08) != 0;
        if (op != Cont && op != Text && op != Binary && op != Close && op != Ping && op != Pong) {
            ev = error(1002, "unknown opcode");
            return used;
        }
        uint64_t len = b1 & 0x7f;
        size_t off = 2;
        if (control && (!fin || len > 125)) {
            ev = error(1002, "control frame fragmented or longer than 125 bytes");
            return used;
        }
        if (len == 126) {
            if (b.size() < 4) {
                return used;
            }
            len = (static_cast<uint64_t>(static_cast<uint8_t>(b[2])) << 8) |
                  static_cast<uint8_t>(b[3]);
            off = 4;
        } else if (len == 127) {
            if (b.size() < 10) {
                return used;
            }
            len = 0;
            for (int k = 0; k < 8; ++k) {
                len = (len << 8) | static_cast<uint8_t>(b[2 + k]);
            }
            if ((len >> 63) != 0) {
                ev = error(1002, "frame length with the high bit set");
                return used;
            }
            off = 10;
        }
        // Sizes are checked before the payload arrives: nothing larger is ever buffered.
        if (!control) {
            if (op == Cont && messageOp_ == 0) {
                ev = error(1002, "continuation without a message");
                return used;
            }
            if (op != Cont && messageOp_ != 0) {
                ev = error(1002, "new message inside a fragmented one");
                return used;
            }
            if (len > maxMessage_ || message_.size() + len > maxMessage_) {
                ev = error(1009, "message larger than " + std::to_string(maxMessage_) + " bytes");
                return used;
            }
        }
        if (b.size() < off + 4 + len) {
            return used;  // the whole frame is not here yet
        }
        const char* mask = b.data() + off;
        const char* data = mask + 4;
        std::string payload;
        std::string* dst = control ? &payload : &message_;
        size_t base = dst->size();
        dst->resize(base + len);
        for (uint64_t k = 0; k < len; ++k) {
            (*dst)[base + k] = static_cast<char>(data[k] ^ mask[k & 3]);
        }
        used += off + 4 + static_cast<size_t>(len);
        if (control) {
            if (op == Close) {
                ev.kind = Event::Kind::Close;
                if (payload.size() == 1) {
                    ev = error(1002, "close frame with a one-byte payload");
                } else if (payload.size() >= 2) {
                    ev.code = static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                                    static_cast<uint8_t>(payload[1]));
                    ev.payload = payload.substr(2);
                    if (!validCloseCode(ev.code)) {
                        ev = error(1002, "invalid close code");
                    } else if (!validUtf8(ev.payload)) {
                        ev = error(1007, "close reason is not UTF-8");
                    }
                } else {
                    ev.code = 1005;
                }
                return used;
            }
            ev.kind = op == Ping ? Event::Kind::Ping : Event::Kind::Pong;
            ev.payload = std::move(payload);
            return used;
        }
        if (op != Cont) {
            messageOp_ = op;
        }
        if (fin) {
            ev.kind = Event::Kind::Message;
            ev.opcode = messageOp_;
            ev.payload = std::move(message_);
            message_.clear();
            messageOp_ = 0;
            if (ev.opcode == Text && !validUtf8(ev.payload)) {
                ev = error(1007, "text message is not UTF-8");
            }
            return used;
        }
    }
}

std::string encode(uint8_t opcode, std::string_view payload) {
    std::string f;
    f.reserve(payload.size() + 10);
    f += static_cast<char>(0x80 | (opcode & 0x0f));
    size_t n = payload.size();
    if (n < 126) {
        f += static_cast<char>(n);
    } else if (n <= 0xffff) {
        f += static_cast<char>(126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xff);
    } else {
        f += static_cast<char>(127);
        for (int k = 7; k >= 0; --k) {
            f += static_cast<char>((static_cast<uint64_t>(n) >> (8 * k)) & 0xff);
        }
    }
    f.append(payload);
    return f;
}

std::string encodeClose(uint16_t code, std::string_view reason) {
    std::string p;
    p += static_cast<char>(code >> 8);
    p += static_cast<char>(code & 0xff);
    reason = reason.substr(0, 123);
    while (!validUtf8(reason)) {  // a cut inside a character: drop the broken tail
        reason.remove_suffix(1);
    }
    p.append(reason);
    return encode(Close, p);
}

std::string acceptKey(std::string_view key) {
    // The key is base64 of 16 bytes: 24 characters ending in "==".
    if (key.size() != 24 || key.substr(22) != "==") {
        return "";
    }
    try {
        std::istringstream in{std::string(key)};
        Poco::Base64Decoder dec(in);
        std::string raw((std::istreambuf_iterator<char>(dec)), std::istreambuf_iterator<char>());
        if (raw.size() != 16) {
            return "";
        }
    } catch (const std::exception&) {
        return "";
    }
    Poco::SHA1Engine sha;
    sha.update(std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    const Poco::DigestEngine::Digest& d = sha.digest();
    std::ostringstream out;
    Poco::Base64Encoder enc(out);
    enc.write(reinterpret_cast<const char*>(d.data()), static_cast<std::streamsize>(d.size()));
    enc.close();
    return out.str();
}

}  // namespace mp::host::ws
