# SPDX-License-Identifier: Apache-2.0
"""The HTTP and websocket server against a hostile client, byte by byte on raw sockets, with a
real mysqlprobe process on loopback:

 - a body the server did not read is never parsed as the next request (request smuggling
   through a 404, a 401, a 413 on a keep-alive connection);
 - status lines carry their own reason ("404 Not Found"), an unknown HTTP version gets 505;
 - RFC 6455: an unmasked client frame, a control frame over 125 bytes, a fragmented control
   frame and reserved bits each close the client with 1002; the host keeps serving.
Usage: http_protocol.py MYSQLPROBE"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "live"))
from harness import Probe, skip  # noqa: E402
from sechttp import check, finish, ws_upgrade  # noqa: E402

BINARY = sys.argv[1]



def exchange(port, data, wait=2.0):
    """Sends raw bytes, returns everything the server answers until it closes (or `wait`)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def interval_ms(p):
    import json
    return json.loads(p.get("/health"))["interval_ms"]


def smuggling(p):
    port = p.http_port
    hidden = (b"POST /config/update?report_period_ms=100 HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 0\r\n\r\n")
    for path, why in ((b"/nosuchpath", "404"), (b"/metrics", "a route answered without its body")):
        req = (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
               str(len(hidden)).encode() + b"\r\n\r\n" + hidden)
        before = interval_ms(p)
        out = exchange(port, req)
        responses = out.count(b"HTTP/1.1 ")
        check(responses == 1 and interval_ms(p) == before,
              f"smuggling ({why}): one answer, the body is not a second request "
              f"({responses} answers, interval {before} -> {interval_ms(p)} ms)")
    big = b"x" * (2 << 20)
    req = (b"POST /config/update HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
           str(len(big)).encode() + b"\r\n\r\n" + hidden)
    out = exchange(port, req)
    check(b" 413 " in out.split(b"\r\n", 1)[0] and out.count(b"HTTP/1.1 ") == 1,
          "smuggling (413): the oversized body is not read, and nothing after it is served")


def status_lines(p):
    out = exchange(p.http_port, b"GET /nosuchpath HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first = out.split(b"\r\n", 1)[0]
    check(out.startswith(b"HTTP/1.1 404 Not Found\r\n"), f"status line names its reason: {first!r}")
    out = exchange(p.http_port, b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n")
    first = out.split(b"\r\n", 1)[0]
    check(first.split(b" ")[1:2] == [b"505"], f"HTTP/9.9 is refused with 505: {first!r}")
    out = exchange(p.http_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 200 OK\r\n"), "and 200 is OK")


def ws_open(port):
    s, status, rest = ws_upgrade(port)
    assert status == 101, status
    return s, rest


def frame(op, payload, fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    else:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close_code(s, rest):
    """The close code of the server's close frame (after any data frames), or None."""
    data = rest
    deadline = time.time() + 5
    while time.time() < deadline:
        while len(data) >= 2:
            op, n = data[0] & 0x0F, data[1] & 0x7F
            off = 2
            if n == 126:
                n, off = struct.unpack("!H", data[2:4])[0], 4
            elif n == 127:
                n, off = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < off + n:
                break
            if op == 8:
                return struct.unpack("!H", data[off:off + 2])[0] if n >= 2 else 1005
            data = data[off + n:]
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return None


def websocket_rules(p):
    cases = [
        ("an unmasked client frame", frame(1, b"hello", mask=False)),
        ("a ping of 126 bytes", frame(9, b"p" * 126)),
        ("a fragmented ping", frame(9, b"p", fin=False)),
        ("reserved bits without an extension", frame(1, b"x", rsv=0x40)),
        ("an unknown opcode", frame(3, b"x")),
    ]
    for what, data in cases:
        s, rest = ws_open(p.http_port)
        s.sendall(data)
        code = close_code(s, rest)
        s.close()
        check(code == 1002, f"websocket: {what} closes with 1002 (got {code})")
    s, rest = ws_open(p.http_port)
    s.sendall(frame(9, b"fine"))
    s.sendall(frame(8, struct.pack("!H", 1000)))
    check(close_code(s, rest) == 1000, "websocket: a well-formed ping and close are answered")
    s.close()
    m = p.get("/metrics")
    line = [ln for ln in m.splitlines()
            if ln.startswith("mysqlprobe_http_websocket_protocol_errors_total ")]
    check(bool(line) and int(line[0].split()[1]) == len(cases),
          f"websocket: protocol errors counted ({line})")
    check(p.get("/health").startswith("{"), "the host keeps serving")


def main():
    if not os.path.exists(BINARY):
        skip(f"no binary at {BINARY}")
    yaml = ("serverport: 0\nserveraddress: 127.0.0.1\ninterval: 3600\n"
            "plugins:\n  cluster: none\n  sinks: [sink-websocket]\n")
    with Probe(BINARY, yaml) as p:
        smuggling(p)
        status_lines(p)
        websocket_rules(p)
    finish()


main()
