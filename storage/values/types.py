"""The one map between SQL type names and Arrow types (docs/DESIGN.md §7), used by every layer:
CREATE TOPIC's declared columns (SQL → Arrow, `arrow_type`), a materialized view's output
columns (Arrow → SQL, `sql_type`), DESCRIBE's names of the system columns, and the bench's
generated DDL. It lives in storage because storage is the lowest layer: the segment writer
decodes JSON into these Arrow types, SQL and the engine name them."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError

# Event time everywhere is epoch milliseconds, naive (UTC by convention).
TIMESTAMP: Final = pa.timestamp("ms")

# SQL name (upper case, single spaces) → Arrow type; synonyms of the common SQL dialects.
_SIMPLE: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INT8": pa.int64(),
    "LONG": pa.int64(),
    "INT": pa.int32(),
    "INTEGER": pa.int32(),
    "INT4": pa.int32(),
    "SMALLINT": pa.int16(),
    "TINYINT": pa.int8(),
    "DOUBLE": pa.float64(),
    "DOUBLE PRECISION": pa.float64(),
    "FLOAT8": pa.float64(),
    "FLOAT": pa.float32(),
    "REAL": pa.float32(),
    "BOOLEAN": pa.bool_(),
    "BOOL": pa.bool_(),
    "STRING": pa.string(),
    "TEXT": pa.string(),
    "VARCHAR": pa.string(),
    "CHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": TIMESTAMP,
}
_PARAMETRISED = re.compile(r"^(VARCHAR|CHAR|STRING|TIMESTAMP|DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")

# Arrow type → the canonical SQL name a view's output column is declared with. Unsigned ints
# widen to BIGINT (DataFusion's count() is UInt64) rather than failing the view.
_CANONICAL: dict[pa.DataType, str] = {
    pa.int64(): "BIGINT",
    pa.int32(): "INT",
    pa.int16(): "SMALLINT",
    pa.int8(): "TINYINT",
    pa.uint64(): "BIGINT",
    pa.uint32(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.float32(): "FLOAT",
    pa.bool_(): "BOOLEAN",
    pa.string(): "STRING",
    pa.large_string(): "STRING",
    pa.date32(): "DATE",
}

# What DESCRIBE calls the system columns (their Arrow types are sql/query/catalog.py's
# SYSTEM_FIELDS): they are not declarable, so they keep names `sql_type` does not give.
SYSTEM_COLUMN_TYPES: Final = MappingProxyType(
    {
        "_partition": "INT",
        "_offset": "BIGINT",
        "_timestamp": "TIMESTAMP(3) WITH TIME ZONE",
        "_key": "BYTES",
        "_value": "BYTES",
    }
)


def arrow_type(sql_type: str) -> pa.DataType:
    """The Arrow type of a declared SQL type; InvalidInputError names an unsupported one."""
    normal = " ".join(sql_type.upper().split())
    if normal in _SIMPLE:
        return _SIMPLE[normal]
    match = _PARAMETRISED.match(normal)
    if match:
        kind, first, second = match.group(1), int(match.group(2)), match.group(3)
        if kind in ("VARCHAR", "CHAR", "STRING"):
            return pa.string()
        if kind == "TIMESTAMP":
            if first > 3:
                raise InvalidInputError(f"TIMESTAMP({first}): only millisecond precision (TIMESTAMP(3)) is kept")
            return TIMESTAMP
        if not 1 <= first <= 38 or int(second or 0) > first:
            raise InvalidInputError(f"{sql_type}: DECIMAL precision must be 1..38 and scale <= precision")
        return pa.decimal128(first, int(second or 0))
    raise InvalidInputError(
        f"unsupported column type {sql_type!r}; use BIGINT, INT, SMALLINT, TINYINT, DOUBLE, FLOAT, BOOLEAN, "
        "STRING/VARCHAR, DECIMAL(p, s), DATE or TIMESTAMP(3)"
    )


def sql_type(arrow: pa.DataType) -> str:
    """The SQL type a column of `arrow` is declared as (arrow_type of it gives it back, up to
    width and timezone: every timestamp is kept as TIMESTAMP(3))."""
    if pa.types.is_timestamp(arrow):
        return "TIMESTAMP(3)"
    if pa.types.is_decimal(arrow):
        return f"DECIMAL({arrow.precision}, {arrow.scale})"
    if arrow in _CANONICAL:
        return _CANONICAL[arrow]
    return "STRING"  # lists, structs, binary: kept as their JSON text
