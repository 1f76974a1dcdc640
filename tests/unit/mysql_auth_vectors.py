#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Prints the vectors of mysql_auth_test.cpp as PyMySQL computes them: password, nonce,
caching_sha2_password scramble, mysql_native_password scramble (hex)."""
import pymysql._auth as auth

CASES = [(b"secret", b"01234567890123456789"), (b"", b"01234567890123456789"),
         (b"Pw-9f3k-not-in-logs", bytes(range(1, 21))),
         ("pässwörd €".encode(), b"\x7f" * 20),
         (b"x" * 100, b"abcdefghij" + bytes(range(1, 11)))]
for password, nonce in CASES:
    native = auth.scramble_native_password(password, nonce).hex() if password else ""
    print(password.hex(), nonce.hex(), auth.scramble_caching_sha2(password, nonce).hex(), native)
