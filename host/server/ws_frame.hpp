// SPDX-License-Identifier: Apache-2.0
// RFC 6455 frames as a server reads and writes them. Pure functions over buffers, bounded:
// a client's frames are masked, reserved bits are 0 (no extension is ever negotiated), opcodes
// are known, control frames are final and at most 125 bytes, messages have a maximum size, text
// is UTF-8, close codes are valid. Every violation names the close code to send.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mp::host::ws {

enum Op : uint8_t { Cont = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

/// One complete event out of the byte stream.
struct Event {
    enum class Kind { None, Message, Ping, Pong, Close, Error } kind = Kind::None;
    uint8_t opcode = 0;   // Message: Text or Binary
    std::string payload;  // Message: the whole message; Ping/Pong: its data; Close: reason
    uint16_t code = 0;    // Close: the peer's code (1005: none given); Error: the code to send
    std::string why;      // Error: one line
};

/// Reads a client's frames and reassembles messages, bounded by `maxMessage` bytes.
class Reader {
  public:
    explicit Reader(size_t maxMessage) : maxMessage_(maxMessage) {}
    /// Consumes what it can from `in` and returns how many bytes it used; `ev` gets the first
    /// complete event (kind None when more bytes are needed). After an Error, stop reading.
    size_t next(std::string_view in, Event& ev);
    /// Bytes of a message being assembled (for memory accounting).
    size_t buffered() const { return message_.size(); }

  private:
    size_t maxMessage_;
    std::string message_;
    uint8_t messageOp_ = 0;  // 0: no fragmented message in progress
};

/// A server frame (never masked), final, with its payload.
std::string encode(uint8_t opcode, std::string_view payload);
/// A close frame with a code and a reason (cut to fit 125 bytes).
std::string encodeClose(uint16_t code, std::string_view reason);

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key; "" when the key is not base64 of 16 bytes.
std::string acceptKey(std::string_view key);

/// True when `s` is well-formed UTF-8.
bool validUtf8(std::string_view s);

}  // namespace mp::host::ws
