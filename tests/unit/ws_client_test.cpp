// SPDX-License-Identifier: Apache-2.0
// The client side's message assembly (libs/push ws_client): what the pusher and cluster-static's
// master build reports from.
#include <Poco/Net/WebSocket.h>
#include <doctest/doctest.h>

#include <mp/ws_client.hpp>

using mp::push::ClientFrame;
using mp::push::MessageAssembler;
using WS = Poco::Net::WebSocket;

namespace {
ClientFrame frame(int op, bool fin, std::string_view payload) {
    return ClientFrame{ClientFrame::Kind::Data, op, fin, payload};
}
}  // namespace

TEST_SUITE("ws client") {
    TEST_CASE("text messages in one frame and in fragments") {
        MessageAssembler m(16);
        CHECK(m.add(frame(WS::FRAME_OP_TEXT, true, "hello")) == MessageAssembler::Result::Complete);
        CHECK(m.take() == "hello");
        CHECK(m.add(frame(WS::FRAME_OP_TEXT, false, "ab")) == MessageAssembler::Result::More);
        CHECK(m.add(frame(WS::FRAME_OP_CONT, false, "cd")) == MessageAssembler::Result::More);
        CHECK(m.add(frame(WS::FRAME_OP_CONT, true, "ef")) == MessageAssembler::Result::Complete);
        CHECK(m.take() == "abcdef");
    }

    TEST_CASE("binary messages are skipped; stray continuations ignored") {
        MessageAssembler m(16);
        CHECK(m.add(frame(WS::FRAME_OP_BINARY, false, "xx")) == MessageAssembler::Result::More);
        CHECK(m.add(frame(WS::FRAME_OP_CONT, true, "yy")) == MessageAssembler::Result::More);
        CHECK(m.add(frame(WS::FRAME_OP_CONT, true, "zz")) == MessageAssembler::Result::More);
        CHECK(m.add(frame(WS::FRAME_OP_TEXT, true, "t")) == MessageAssembler::Result::Complete);
        CHECK(m.take() == "t");
    }

    TEST_CASE("the cap counts the whole message; a message inside a message is refused") {
        MessageAssembler m(8);
        CHECK(m.add(frame(WS::FRAME_OP_TEXT, false, "12345")) == MessageAssembler::Result::More);
        CHECK(m.add(frame(WS::FRAME_OP_CONT, false, "6789")) == MessageAssembler::Result::TooBig);
        MessageAssembler p(8);
        CHECK(p.add(frame(WS::FRAME_OP_TEXT, false, "1")) == MessageAssembler::Result::More);
        CHECK(p.add(frame(WS::FRAME_OP_TEXT, true, "2")) == MessageAssembler::Result::Protocol);
    }
}
