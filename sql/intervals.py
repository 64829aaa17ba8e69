"""INTERVAL literals (Flink and Postgres spellings) as whole milliseconds.

Window sizes, slides, steps, gaps and offsets are turned into integers here, once, and the
rewrite does all window arithmetic on int64 milliseconds (docs/DESIGN.md §7: interval arithmetic in
SQL engines is where month/nanosecond units and rounding go wrong). Accepted:
`INTERVAL '10' MINUTE(S)`, `INTERVAL '1.5' SECOND`, `INTERVAL '10 seconds'`,
`INTERVAL '1 hour 30 minutes'`, `INTERVAL '00:05' MINUTE TO SECOND`, `INTERVAL '1 02:00' DAY TO
MINUTE`, `INTERVAL '01:30'` (hours:minutes, as Postgres reads it) and a leading minus sign.
Months and years have no fixed length, so they are refused.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlglot import exp

__all__ = ["IntervalError", "interval_ms"]

_UNIT_MS: dict[str, int] = {
    "MILLISECOND": 1,
    "SECOND": 1_000,
    "MINUTE": 60_000,
    "HOUR": 3_600_000,
    "DAY": 86_400_000,
    "WEEK": 604_800_000,
}
_UNIT_ALIASES: dict[str, str] = {
    "MS": "MILLISECOND",
    "MSEC": "MILLISECOND",
    "MSECS": "MILLISECOND",
    "MILLIS": "MILLISECOND",
    "S": "SECOND",
    "SEC": "SECOND",
    "SECS": "SECOND",
    "M": "MINUTE",
    "MIN": "MINUTE",
    "MINS": "MINUTE",
    "H": "HOUR",
    "HR": "HOUR",
    "HRS": "HOUR",
    "D": "DAY",
    "W": "WEEK",
}
_CALENDAR_UNITS = {"MONTH", "YEAR", "QUARTER", "DECADE", "CENTURY", "MILLENNIUM", "MON", "Y", "YR"}
# Field order of a span such as DAY TO SECOND: days are separated by a space, the rest by colons.
_SPAN_ORDER = ("DAY", "HOUR", "MINUTE", "SECOND")
_PAIR = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*")
_CLOCK = re.compile(r"\s*([+-])?\s*(?:(\d+)\s+)?(\d+(?::\d+){1,2}(?:\.\d+)?)\s*\Z")


class IntervalError(ValueError):
    """The argument is not a fixed-length interval; the message says why."""


def _unit(name: str) -> str:
    upper = name.upper()
    if upper in _UNIT_MS:
        return upper
    if upper.endswith("S") and upper[:-1] in _UNIT_MS:
        return upper[:-1]
    if upper in _UNIT_ALIASES:
        return _UNIT_ALIASES[upper]
    singular = upper[:-1] if upper.endswith("S") else upper
    if upper in _CALENDAR_UNITS or singular in _CALENDAR_UNITS:
        raise IntervalError(f"{name} has no fixed length in milliseconds")
    raise IntervalError(f"unknown interval unit {name}")


def _number(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise IntervalError(f"{text!r} is not a number") from None


def _whole_ms(value: Decimal) -> int:
    if value != value.to_integral_value():
        raise IntervalError(f"{value} ms is not a whole number of milliseconds")
    return int(value)


def _span_ms(text: str, first: str, last: str) -> int:
    """`'1 02:30:00.5'` read with the fields DAY..SECOND named by `first TO last`."""
    if first not in _SPAN_ORDER or last not in _SPAN_ORDER:
        raise IntervalError(f"{first} TO {last} is not a day-time interval")
    units = _SPAN_ORDER[_SPAN_ORDER.index(first) : _SPAN_ORDER.index(last) + 1]
    if len(units) < 2:
        raise IntervalError(f"{first} TO {last} is not a valid interval span")
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("+-").strip()
    fields = re.split(r"[ :]+", body) if units[0] == "DAY" else body.split(":")
    if len(fields) != len(units):
        raise IntervalError(f"{text!r} does not match {first} TO {last}")
    total = sum((_number(field) * _UNIT_MS[unit] for field, unit in zip(fields, units, strict=True)), Decimal(0))
    return sign * _whole_ms(total)


def _string_ms(text: str) -> int:
    """An interval string with its units inside: `'10 seconds'`, `'1 hour 30 min'`, `'01:30'`."""
    clock = _CLOCK.match(text)
    if clock:
        sign, days, hms = clock.groups()
        parts = hms.split(":")
        units = ("HOUR", "MINUTE", "SECOND")[: len(parts)]
        total = sum((_number(p) * _UNIT_MS[u] for p, u in zip(parts, units, strict=True)), Decimal(0))
        if days:
            total += _number(days) * _UNIT_MS["DAY"]
        return (-1 if sign == "-" else 1) * _whole_ms(total)
    pairs = list(_PAIR.finditer(text))
    if not pairs or "".join(m.group(0) for m in pairs).strip() != text.strip():
        raise IntervalError(f"{text!r} has no unit; write e.g. INTERVAL '10' SECOND")
    total = sum((_number(m.group(1)) * _UNIT_MS[_unit(m.group(2))] for m in pairs), Decimal(0))
    return _whole_ms(total)


def interval_ms(node: exp.Expr) -> int:
    """The exact length of an INTERVAL expression in milliseconds (may be negative or zero)."""
    if isinstance(node, exp.Paren):
        return interval_ms(node.this)
    if isinstance(node, exp.Neg):
        return -interval_ms(node.this)
    if isinstance(node, exp.Add):
        return interval_ms(node.this) + interval_ms(node.expression)
    if not isinstance(node, exp.Interval):
        raise IntervalError("is not an INTERVAL")
    value = node.this
    if not isinstance(value, exp.Literal):
        raise IntervalError("must be an INTERVAL literal")
    text = value.name
    unit = node.args.get("unit")
    if unit is None:
        return _string_ms(text)
    if isinstance(unit, exp.IntervalSpan):
        return _span_ms(text, _unit(unit.this.name), _unit(unit.expression.name))
    return _whole_ms(_number(text) * _UNIT_MS[_unit(unit.name)])
