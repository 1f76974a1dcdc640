// SPDX-License-Identifier: Apache-2.0
// Reading a client websocket (Poco::Net::WebSocket) the same way wherever this node dials one:
// control frames answered or reported in one place, an oversized frame reported rather than
// thrown, and text messages reassembled under a byte cap. Used by the pusher (acknowledgements
// from the server it pushes to) and cluster-static's master (reports from its slaves). The
// host's own server reads frames with its non-blocking parser (host/server/ws_frame).
#pragma once

#include <Poco/Buffer.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace Poco::Net {
class WebSocket;
}  // namespace Poco::Net

namespace mp::push {

struct ClientFrame {
    enum class Kind {
        Data,    // a text, binary or continuation frame: opcode, fin and payload say which
        Ping,    // a ping, already answered with its pong
        Pong,    // a pong (payload: what the ping carried)
        Closed,  // a close frame, or the peer closed the connection
        TooBig,  // a frame larger than the socket's max payload size (the connection is unusable)
    };
    Kind kind = Kind::Closed;
    int opcode = 0;  // Poco::Net::WebSocket::FRAME_OP_*
    bool fin = true;
    std::string_view payload;  // into the caller's buffer, valid until the next read
};

/// Reads one frame (blocking up to the socket's receive timeout; Poco's exceptions for a
/// timeout or a broken connection). A ping is answered with its pong before this returns.
ClientFrame readClientFrame(Poco::Net::WebSocket& ws, Poco::Buffer<char>& buffer);

/// Text messages out of frames: binary messages are skipped, a message over `maxBytes` is
/// refused. Feed it every Data frame.
class MessageAssembler {
  public:
    explicit MessageAssembler(size_t maxBytes) : max_(maxBytes) {}
    enum class Result {
        More,      // the message goes on (or the frame was not part of a text message)
        Complete,  // take() it
        TooBig,    // over maxBytes: drop the connection
        Protocol,  // a new message inside a fragmented one
    };
    Result add(const ClientFrame& f);
    /// The completed message; the assembler is empty again.
    std::string take();

  private:
    size_t max_;
    std::string message_;
    bool inMessage_ = false;
    bool text_ = false;
};

}  // namespace mp::push
