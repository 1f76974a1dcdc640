#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of fuzz_mysql_client (tests/fuzz/corpus/mysql_client): what a
MariaDB 10.11 server says on one connection, packet by packet, in the order fuzz_mysql_client's
calls ask for it (login; a text query; COM_QUERY, PREPARE, EXECUTE with a cursor, FETCH,
FIELD_LIST, STATISTICS; change user; a few raw packets), and variants (auth switch, errors,
several result sets, LOCAL INFILE, a packet split over 16 MiB - 1 frames announced but cut).
Each file's first byte is the target's option byte. Run: python3 mysql_client_corpus.py DIR"""
import os
import struct
import sys


def lenenc(n):
    if n < 0xfb:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def lstr(s):
    return lenenc(len(s)) + s


class Stream:
    def __init__(self):
        self.out = b""
        self.seq = 0

    def packet(self, payload, seq=None):
        if seq is not None:
            self.seq = seq
        self.out += struct.pack("<I", len(payload))[:3] + bytes([self.seq & 0xff]) + payload
        self.seq += 1
        return self

    def new_command(self):
        self.seq = 1  # the client's command is 0
        return self


SALT = b"abcdefgh" + b"ijklmnopqrst"
CAPS = 0xa0fff7fe  # protocol 4.1, secure connection, plugin auth, multi results...


def handshake(plugin=b"mysql_native_password", caps=CAPS, version=b"10.11.6-MariaDB-0+deb12u1"):
    return (b"\x0a" + version + b"\0" + struct.pack("<I", 42) + SALT[:8] + b"\0" +
            struct.pack("<H", caps & 0xffff) + b"\x2d" + struct.pack("<H", 2) +
            struct.pack("<H", caps >> 16) + bytes([len(SALT) + 1]) + b"\0" * 6 +
            struct.pack("<I", 0x1d) + SALT[8:] + b"\0" + plugin + b"\0")


def ok(affected=0, insert_id=0, status=2, warnings=0):
    return b"\x00" + lenenc(affected) + lenenc(insert_id) + struct.pack("<HH", status, warnings)


def eof(status=2, warnings=0):
    return b"\xfe" + struct.pack("<HH", warnings, status)


def err(code=1064, state=b"42000", message=b"You have an error in your SQL syntax"):
    return b"\xff" + struct.pack("<H", code) + b"#" + state + message


def coldef(name, type_=0x08):
    return (lstr(b"def") + lstr(b"db") + lstr(b"t") + lstr(b"t") + lstr(name) + lstr(name) +
            b"\x0c" + struct.pack("<HIBHB", 63, 20, type_, 0, 0) + b"\0\0")


def result_set(s, names, rows, status=2):
    s.packet(lenenc(len(names)))
    for n in names:
        s.packet(coldef(n))
    s.packet(eof(status))
    for row in rows:
        s.packet(b"".join(b"\xfb" if v is None else lstr(v) for v in row))
    s.packet(eof(status))


def login(s, switch=False):
    s.packet(handshake(b"caching_sha2_password" if switch else b"mysql_native_password"), 0)
    s.seq = 2
    if switch:
        s.packet(b"\xfe" + b"mysql_native_password\0" + SALT + b"\0")
        s.seq += 1
    s.packet(ok())


def calls(s):
    s.new_command()  # query("SELECT 1") with names
    result_set(s, [b"1", b"name"], [[b"1", b"a"], [None, b"bb"]])
    s.new_command()  # COM_QUERY
    result_set(s, [b"1"], [[b"1"]])
    s.new_command()  # COM_STMT_PREPARE "SELECT ?"
    s.packet(b"\x00" + struct.pack("<IHHBH", 1, 1, 1, 0, 0))
    s.packet(coldef(b"?"))
    s.packet(eof())
    s.packet(coldef(b"?"))
    s.packet(eof())
    s.new_command()  # COM_STMT_EXECUTE with a cursor: definitions, then EOF with the cursor flag
    s.packet(lenenc(1))
    s.packet(coldef(b"?"))
    s.packet(eof(0x42))
    s.new_command()  # COM_STMT_FETCH: binary rows up to EOF
    s.packet(b"\x00\x00" + struct.pack("<q", 7))
    s.packet(eof(0x82))
    s.new_command()  # COM_FIELD_LIST
    s.packet(coldef(b"id"))
    s.packet(eof())
    s.new_command()  # COM_STATISTICS
    s.packet(b"Uptime: 10  Threads: 1  Questions: 3")
    s.new_command()  # COM_CHANGE_USER
    s.packet(ok())
    for i in range(3):  # a binlog stream: OK byte then an event header
        s.packet(b"\x00" + struct.pack("<IBIIIH", 0, 0x1b, 1, 19, 0, 0))


def seeds():
    s = Stream()
    login(s)
    calls(s)
    yield "session", 0x0f, s.out

    s = Stream()
    login(s, switch=True)
    calls(s)
    yield "auth_switch", 0x1f, s.out

    s = Stream()
    s.packet(err(1130, b"HY000", b"Host '127.0.0.1' is not allowed to connect"), 0)
    yield "refused_at_handshake", 0x00, s.out

    s = Stream()
    s.packet(handshake(), 0)
    s.seq = 2
    s.packet(err(1045, b"28000", b"Access denied for user 'fuzz'@'localhost'"))
    yield "access_denied", 0x09, s.out

    s = Stream()
    login(s)
    s.new_command()
    s.packet(err())
    s.new_command()  # COM_QUERY: two result sets then an OK
    result_set(s, [b"a"], [[b"x"]], status=0x0a)
    result_set(s, [b"b"], [], status=0x0a)
    s.packet(ok())
    s.new_command()  # prepare refused
    s.packet(err(1146, b"42S02", b"Table 'db.t' doesn't exist"))
    s.new_command()  # execute: LOCAL INFILE request, then OK
    s.packet(b"\xfbdata.csv")
    s.seq += 1
    s.packet(ok(affected=0))
    yield "errors_and_multi", 0x0b, s.out

    s = Stream()
    login(s)
    s.new_command()  # a packet announced at 16 MiB - 1 and cut: a continuation never comes
    s.out += b"\xff\xff\xff\x01" + b"\x01" * 100
    yield "cut_max_frame", 0x08, s.out

    s = Stream()
    s.packet(handshake(caps=CAPS & ~0x200), 0)  # no protocol 4.1
    yield "old_server", 0x00, s.out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "corpus", "mysql_client")
    os.makedirs(out, exist_ok=True)
    for name, options, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([options]) + data)
        print(f"{name}: {len(data) + 1} bytes")


if __name__ == "__main__":
    main()
