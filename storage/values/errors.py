"""Why one JSON value does not fit a topic's declared columns: the column and a reason a
producer can act on (not JSON, wrong type, out of range, scale). Runs on one value at a time
and only for values the vectorised decoder (values/json_decode.py) already refused, so its Python
never touches the success path. The decoder stays the judge of what fits: this module only
finds which column it refuses and words the reason."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import TIMESTAMP, sql_type

_MAX_SHOWN = 60


def explain(raw: bytes | None, schema: ValueSchema, fits: Callable[[ValueSchema], bool]) -> tuple[str | None, str]:
    """(column or None for the value as a whole, reason) for a value that did not fit;
    `fits(schema)` decodes the value against a schema the way the decoder does."""
    if raw is None:
        return None, "a null value cannot fail to decode"  # never reached: nulls are tombstones
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not JSON: not UTF-8 text ({exc.reason} at byte {exc.start})"
    try:
        doc = json.loads(text, object_pairs_hook=_unique, parse_float=_finite)
    except _Refused as exc:
        return None, str(exc)
    except ValueError as exc:
        return None, f"not JSON: {exc} in {_shown(text)}"
    if doc is not None and not isinstance(doc, dict):
        return None, f"wrong type: the value is {_kind(doc)}, not a JSON object"
    for column in schema.columns:
        if not fits(ValueSchema((column,))):
            return column.name, _why(doc.get(column.name) if doc else None, column)
    # Every column fits alone; what is left is the object as a whole (a key given twice).
    return None, f"not JSON the reader accepts (a field given twice?): {_shown(text)}"


class _Refused(ValueError):
    """Valid for Python's json module, refused by the Arrow reader."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise _Refused(f"not JSON the reader accepts: field {twice!r} is given twice")
    return dict(pairs)


def _finite(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        raise _Refused(f"out of range: the number {_shown(literal)[1:-1]} is beyond a double's range")
    return number


def _why(value: Any, column: Column) -> str:
    target = column.arrow_type
    sql = column.sql_type.upper()
    if value is None:
        return f"cannot be read as {sql}"
    if pa.types.is_map(target) and isinstance(value, dict | list):
        # A MAP reads a plain object or an array of {"key", "value"} (values/json_composite.py).
        key, item = sql_type(target.key_type), sql_type(target.item_type)
        return f"wrong type: {_kind(value)} whose entries do not fit {sql} (keys {key}, values {item})"
    if isinstance(value, dict | list):
        return f"wrong type: {_kind(value)} where {sql} is declared"
    if pa.types.is_boolean(target):
        return f"wrong type: {_kind(value)} {_shown(value)} where BOOLEAN is declared"
    if isinstance(value, bool) and target != pa.string():
        return f"wrong type: a boolean where {sql} is declared"
    if pa.types.is_string(target):
        return f"wrong type: {_kind(value)} {_shown(value)} where {sql} is declared (send a JSON string)"
    if pa.types.is_integer(target):
        if isinstance(value, int):
            bits = target.bit_width
            return f"out of range: {value} does not fit {sql} ({-(2 ** (bits - 1))}..{2 ** (bits - 1) - 1})"
        return f"wrong type: {_kind(value)} {_shown(value)} where {sql} (an integer) is declared"
    if pa.types.is_floating(target):
        if isinstance(value, int | float):
            return f"out of range: {_shown(value)} does not fit {sql}"
        return f"wrong type: {_kind(value)} {_shown(value)} where {sql} is declared"
    if pa.types.is_decimal(target):
        return _why_decimal(value, target, sql)
    if target == TIMESTAMP:
        if isinstance(value, int):
            return f"out of range: {value} epoch milliseconds is outside years 1..9999"
        if isinstance(value, str):
            return (
                f"not a timestamp: {_shown(value)} is not ISO 8601 (e.g. 2026-01-31T12:00:00.123Z) "
                "within years 1..9999 UTC"
            )
        return f"wrong type: {_kind(value)} {_shown(value)} where {sql} (ISO string or epoch ms) is declared"
    if pa.types.is_date32(target):
        if isinstance(value, str):
            return f"not a date: {_shown(value)} is not an ISO date (e.g. 2026-01-31)"
        return f"wrong type: {_kind(value)} {_shown(value)} where DATE (an ISO string) is declared"
    return f"cannot be read as {sql}: {_shown(value)}"


def _why_decimal(value: Any, target: Any, sql: str) -> str:
    if not isinstance(value, int | float | str) or (isinstance(value, float) and not math.isfinite(value)):
        return f"wrong type: {_kind(value)} {_shown(value)} where {sql} is declared"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return f"wrong type: {_kind(value)} {_shown(value)} is not a number, {sql} is declared"
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if places > target.scale:
        return f"scale: {_shown(value)} has {places} decimal places, {sql} keeps {target.scale}"
    return f"out of range: {_shown(value)} needs more than the {target.precision} digits of {sql}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "null"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
