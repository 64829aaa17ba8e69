"""The one map between SQL type names and Arrow types (docs/DESIGN.md §7), used by every layer:
CREATE TOPIC's declared columns (SQL → Arrow, `arrow_type`), a materialized view's output
columns (Arrow → SQL, `sql_type`), DESCRIBE's names of the system columns, and the bench's
generated DDL. It lives in storage because storage is the lowest layer: the segment writer
decodes JSON into these Arrow types, SQL and the engine name them."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any, Final

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
    if normal in ("BYTES", "VARBINARY", "BINARY") or re.match(r"^(VARBINARY|BINARY)\s*\(\s*\d+\s*\)$", normal):
        return pa.binary()
    if re.match(r"^(ROW|ARRAY|MAP)\s*[<(]", normal):
        return composite_type(sql_type)
    raise InvalidInputError(
        f"unsupported column type {sql_type!r}; use BIGINT, INT, SMALLINT, TINYINT, DOUBLE, FLOAT, BOOLEAN, "
        "STRING/VARCHAR, BYTES/VARBINARY, DECIMAL(p, s), DATE, TIMESTAMP(3), ROW<name TYPE, …>, ARRAY<TYPE> "
        "or MAP<KEY, VALUE>"
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
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow) or pa.types.is_fixed_size_binary(arrow):
        return "BYTES"
    if pa.types.is_struct(arrow):
        fields = ", ".join(f"`{f.name}` {sql_type(f.type)}" for f in arrow)
        return f"ROW<{fields}>"
    if pa.types.is_map(arrow):
        return f"MAP<{sql_type(arrow.key_type)}, {sql_type(arrow.item_type)}>"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow) or pa.types.is_fixed_size_list(arrow):
        return f"ARRAY<{sql_type(arrow.value_type)}>"
    return "STRING"  # anything else (unions, durations, …): kept as its JSON text


def _split_top(text: str) -> list[str]:
    """`text` split at its commas outside <…> and (…), each part stripped."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "<(":
            depth += 1
        elif char in ">)":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _element(text: str, where: str) -> pa.DataType:
    # Flink allows NOT NULL on nested types; Arrow's nested fields are nullable here, so it is dropped.
    text = re.sub(r"\s+NOT\s+NULL\s*$|\s+NULL\s*$", "", text, flags=re.I).strip()
    if not text:
        raise InvalidInputError(f"{where}: expected a type")
    return arrow_type(text)


_FIELD = re.compile(r'^\s*(`[^`]+`|"[^"]+"|[A-Za-z_][A-Za-z0-9_]*)\s+(.+?)\s*$', re.S)


def composite_type(sql_type: str) -> pa.DataType:
    """Flink SQL's composite types: ROW<name TYPE, …> (or ROW(…)) → struct, ARRAY<T> → list,
    MAP<K, V> → map (Arrow map keys are never null)."""
    match = re.match(r"^\s*(ROW|ARRAY|MAP)\s*([<(])(.*)([>)])\s*$", sql_type, re.I | re.S)
    if not match or {"<": ">", "(": ")"}[match.group(2)] != match.group(4):
        raise InvalidInputError(f"unsupported column type {sql_type!r}: unbalanced <…> or (…)")
    kind, inner = match.group(1).upper(), match.group(3)
    parts = _split_top(inner)
    if kind == "ARRAY":
        if len(parts) != 1:
            raise InvalidInputError(f"{sql_type}: ARRAY takes one element type")
        return pa.list_(_element(parts[0], sql_type))
    if kind == "MAP":
        if len(parts) != 2:
            raise InvalidInputError(f"{sql_type}: MAP takes a key type and a value type")
        return pa.map_(_element(parts[0], sql_type), _element(parts[1], sql_type))
    fields: list[pa.Field[Any]] = []
    for part in parts:
        field = _FIELD.match(part)
        if not field:
            raise InvalidInputError(f"{sql_type}: each ROW field is `name TYPE`, got {part!r}")
        name = field.group(1)
        if name[0] in '`"':
            name = name[1:-1]
        if name in (f.name for f in fields):
            raise InvalidInputError(f"{sql_type}: ROW field {name!r} appears twice")
        fields.append(pa.field(name, _element(field.group(2), sql_type)))
    if not fields:
        raise InvalidInputError(f"{sql_type}: a ROW needs at least one field")
    return pa.struct(fields)
