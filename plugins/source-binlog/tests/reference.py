# SPDX-License-Identifier: Apache-2.0
"""The differential against the reference decoder: `mariadb-binlog --verbose
--base64-output=DECODE-ROWS` prints every row image of the same binlog files as `### @N=value`
lines; each value must equal the one in source-binlog's message (full_images), after turning
one printing into the other by the column's type."""
import base64
import calendar
import json
import re
import shutil
import subprocess
from decimal import Decimal

OP = re.compile(rb"^### (INSERT INTO|UPDATE|DELETE FROM) `([^`]*)`\.`([^`]*)`$")
VAL = re.compile(rb"^###   @(\d+)=(.*)$")
HEX = re.compile(rb"\\x([0-9a-f]{2})")


def reference_rows(files):
    """[(op, schema, table, [images as [(N, raw bytes)]])] in binlog order."""
    tool = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog")
    if not tool:
        return None
    out = subprocess.run([tool, "--verbose", "--base64-output=DECODE-ROWS"] + files,
                         capture_output=True, check=True).stdout
    rows, image = [], None
    for line in out.split(b"\n"):
        m = OP.match(line)
        if m:
            rows.append((m.group(1).decode(), m.group(2).decode(), m.group(3).decode(), []))
            continue
        if line in (b"### SET", b"### WHERE"):
            image = []
            rows[-1][3].append(image)
            continue
        m = VAL.match(line)
        if m:
            image.append((int(m.group(1)), m.group(2)))
    return rows


def unquote(raw):
    assert raw[:1] == b"'" and raw[-1:] == b"'", raw[:40]
    return HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw[1:-1])


def as_text(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def labels(column_type):
    return [x.replace("''", "'") for x in re.findall(r"'((?:[^']|'')*)'", column_type)]


def same(raw, ours, data_type, column_type):
    """True when mariadb-binlog's printing `raw` and our JSON value `ours` are one value."""
    if raw == b"NULL":
        return ours is None
    if ours is None:
        return False
    t = data_type
    if t in ("tinyint", "smallint", "mediumint", "int", "bigint"):
        forms = [int(x) for x in re.findall(rb"-?\d+", raw)]  # "-1 (255)": signed (unsigned)
        return int(ours) in forms
    if t == "decimal":
        return Decimal(raw.decode()) == Decimal(ours) and raw.decode().lstrip("-") == ours.lstrip("-")
    if t == "float":
        a = float(raw)
        return abs(a - ours) <= abs(ours) * 1e-5  # printed with %g: 6 digits
    if t == "double":
        return float(raw) == ours
    if t == "bit":
        return int(raw[2:-1], 2) == int(ours)
    if t == "year":
        return int(raw) == ours
    if t == "date":
        return unquote(raw).decode().replace(":", "-") == ours
    if t in ("time", "datetime"):
        return unquote(raw).decode() == ours
    if t == "timestamp":
        if ours.startswith("0000-00-00"):
            return Decimal(raw.decode()) == 0
        whole, _, frac = ours.partition(".")
        epoch = calendar.timegm(tuple(int(x) for x in re.findall(r"\d+", whole)) + (0, 0, 0))
        return Decimal(raw.decode()) == Decimal(f"{epoch}.{frac or 0}")
    if t == "enum":
        i = int(raw)
        return (labels(column_type) + [None])[i - 1] == ours if i else ours == ""
    if t == "set":
        bits = int(raw[2:-1], 2)
        names = [n for k, n in enumerate(labels(column_type)) if bits >> k & 1]
        return ",".join(names) == ours
    b = unquote(raw)
    if t in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry",
             "point", "polygon", "linestring"):
        return b == base64.b64decode(ours)
    return as_text(b) == ours


def compare(records, files, columns, column_types):
    """Every row image of `records` (messages with full_images) against the reference's.
    Returns (rows, values) compared; raises AssertionError at the first difference."""
    ref = reference_rows(files)
    if ref is None:
        return None
    msgs = [json.loads(r["payload"]) for r in records]
    msgs = [m for m in msgs if m["type"] != "heartbeat"]
    assert len(ref) == len(msgs), f"mariadb-binlog has {len(ref)} row images, we have {len(msgs)}"
    values = 0
    kinds = {"INSERT INTO": "row_insert", "UPDATE": "row_update", "DELETE FROM": "row_delete"}
    for n, ((op, schema, table, images), m) in enumerate(zip(ref, msgs)):
        assert (kinds[op], schema, table) == (m["type"], m["schema"], m["table_name"]), \
            f"row {n}: {op} {schema}.{table} vs {m['type']} {m['schema']}.{m['table_name']}"
        ours = {"row_insert": [m.get("values")], "row_delete": [m.get("before_values")],
                "row_update": [m.get("before_values"), m.get("after_values")]}[m["type"]]
        assert len(images) == len(ours), f"row {n}: {len(images)} images vs {len(ours)}"
        for img, mine in zip(images, ours):
            mine = list(mine.items())
            assert len(img) == len(mine), f"row {n}: {len(img)} columns vs {len(mine)}"
            for (k, raw), (name, v) in zip(img, mine):
                dt = columns.get(table, {}).get(name)
                ct = column_types.get(table, {}).get(name, "")
                if dt is None:  # a table dropped since: compare as text
                    continue
                if not same(raw, v, dt, ct):
                    raise AssertionError(f"row {n} ({schema}.{table} {op}) column @{k} {name} "
                                         f"({dt}): mariadb-binlog {raw[:120]!r}, ours {str(v)[:120]!r}")
                values += 1
    return len(ref), values
