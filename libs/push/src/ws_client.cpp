// SPDX-License-Identifier: Apache-2.0
#include "mp/ws_client.hpp"

#include <Poco/Net/NetException.h>
#include <Poco/Net/WebSocket.h>

#include <algorithm>

namespace mp::push {

using WS = Poco::Net::WebSocket;

ClientFrame readClientFrame(WS& ws, Poco::Buffer<char>& buffer) {
    int flags = 0;
    buffer.resize(0);
    int n = 0;
    try {
        n = ws.receiveFrame(buffer, flags);
    } catch (const Poco::Net::WebSocketException& e) {
        if (e.code() != WS::WS_ERR_PAYLOAD_TOO_BIG) {
            throw;
        }
        return ClientFrame{ClientFrame::Kind::TooBig, 0, true, {}};
    }
    int op = flags & WS::FRAME_OP_BITMASK;
    if ((n == 0 && flags == 0) || op == WS::FRAME_OP_CLOSE) {
        return ClientFrame{ClientFrame::Kind::Closed, op, true, {}};
    }
    std::string_view payload(buffer.begin(), static_cast<size_t>(std::max(n, 0)));
    if (op == WS::FRAME_OP_PING) {
        ws.sendFrame(payload.data(), static_cast<int>(payload.size()),
                     static_cast<int>(WS::FRAME_FLAG_FIN) | static_cast<int>(WS::FRAME_OP_PONG));
        return ClientFrame{ClientFrame::Kind::Ping, op, true, payload};
    }
    if (op == WS::FRAME_OP_PONG) {
        return ClientFrame{ClientFrame::Kind::Pong, op, true, payload};
    }
    return ClientFrame{ClientFrame::Kind::Data, op, (flags & WS::FRAME_FLAG_FIN) != 0, payload};
}

MessageAssembler::Result MessageAssembler::add(const ClientFrame& f) {
    if (f.opcode == WS::FRAME_OP_TEXT || f.opcode == WS::FRAME_OP_BINARY) {
        if (inMessage_) {
            return Result::Protocol;
        }
        inMessage_ = true;
        text_ = f.opcode == WS::FRAME_OP_TEXT;
    } else if (f.opcode != WS::FRAME_OP_CONT || !inMessage_) {
        return Result::More;  // an unknown opcode, a continuation of nothing
    }
    if (text_) {
        size_t need = message_.size() + f.payload.size();
        if (need > max_) {
            return Result::TooBig;
        }
        if (need > message_.capacity()) {  // grow geometrically, never past the cap
            message_.reserve(std::min(max_, std::max(need, 2 * message_.capacity())));
        }
        message_.append(f.payload);
    }
    if (!f.fin) {
        return Result::More;
    }
    inMessage_ = false;
    if (!text_) {
        return Result::More;  // binary messages are not reports
    }
    return Result::Complete;
}

std::string MessageAssembler::take() {
    std::string out = std::move(message_);
    message_ = std::string();
    return out;
}

}  // namespace mp::push
