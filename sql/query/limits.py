"""Query governance settings: the memory cap and time limit every SQL statement runs under.

The agent's `--query-memory` / `--query-timeout` (STREAMHOUSE_QUERY_MEMORY,
STREAMHOUSE_QUERY_TIMEOUT_S) are both the default and the ceiling; a session may lower them
with Postgres-style statements, which the SDK Client keeps and sends with every statement:

    SET statement_timeout = '10s'      -- ms, s, min, h; a bare number is milliseconds
    SET query_memory = '512MB'         -- B, KB, MB, GB, TB (1024-based); a bare number is bytes
    SET isolation_level = 'read_uncommitted'  -- also rows of open and aborted Kafka transactions
    RESET statement_timeout            -- back to the agent's value;  RESET ALL: every setting

A session may not raise a limit above the agent's: the operator's flags protect the agent
from any one client. This module holds only the values and their parsing (no DataFusion),
so the agent's config and the SDK can use it without importing the query engine.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.isolation import READ_COMMITTED, parse_isolation

__all__ = [
    "DEFAULT_MEMORY",
    "DEFAULT_TIMEOUT_S",
    "SETTINGS",
    "QueryLimits",
    "SetStatement",
    "agent_limits",
    "format_bytes",
    "format_duration",
    "parse_bytes",
    "parse_duration",
    "parse_set",
    "session_limits",
]

DEFAULT_TIMEOUT_S = 300
# A share of physical memory, not all of it: the agent's own buffers (produce, WAL, segment
# cache) live in the same process, and a query must never be what the kernel kills it for.
DEFAULT_MEMORY = "25%"
SETTINGS = ("statement_timeout", "query_memory", "isolation_level")
# Kafka's consumer property name, as a Kafka or Flink user writes it, for the same setting.
_ALIASES = {"isolation.level": "isolation_level"}

_UNITS_S = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60}
_UNITS_S |= {"h": 3600, "hour": 3600, "hours": 3600}
_UNITS_B = {"b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20, "gb": 1 << 30, "gib": 1 << 30}
_UNITS_B |= {"tb": 1 << 40, "tib": 1 << 40}
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z%]*)\s*$")
_SET = re.compile(
    r"""^\s*SET\s+(?:SESSION\s+)?(?P<name>"[^"]+"|'[^']+'|[\w.]+)\s*(?:=|\bTO\b)\s*(?P<value>.*?)\s*;?\s*$""",
    re.IGNORECASE | re.DOTALL,
)
_RESET = re.compile(r"""^\s*RESET\s+(?P<name>"[^"]+"|'[^']+'|[\w.]+)\s*;?\s*$""", re.IGNORECASE)


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: float | None  # None: no time limit
    memory_bytes: int
    # Which rows of Kafka transactions a query sees (storage/metadata/isolation.py): committed
    # ones by default; read_uncommitted also those of open and aborted transactions (debugging).
    isolation: str = READ_COMMITTED

    def describe(self) -> str:
        timeout = format_duration(self.timeout_s) if self.timeout_s is not None else "none"
        return f"statement_timeout {timeout}, query_memory {format_bytes(self.memory_bytes)}"


@dataclass(frozen=True)
class SetStatement:
    name: str  # lower case, one of SETTINGS, or "all" for RESET ALL
    value: str | None  # None: RESET


def parse_duration(text: str, what: str = "statement_timeout") -> float:
    """Seconds in '10s', '500ms', '2min', '1h' or '1500' (milliseconds, as in Postgres)."""
    match = _AMOUNT.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or (unit and unit not in _UNITS_S):
        raise InvalidInputError(f"{what} {text!r} is not a duration; write e.g. '10s', '500ms', '5min' or '1h'")
    seconds = float(match.group(1)) * (_UNITS_S[unit] if unit else 0.001)
    if seconds <= 0:
        raise InvalidInputError(f"{what} {text!r} must be positive")
    return seconds


def parse_bytes(text: str, what: str = "query_memory", *, allow_share: bool = False) -> int:
    """Bytes in '512MB', '2GB', '1048576' (bytes) or, for the agent's flag, '25%' of RAM."""
    match = _AMOUNT.match(text)
    unit = match.group(2).lower() if match else ""
    valid = match is not None and (unit in _UNITS_B or unit == "" or (unit == "%" and allow_share))
    if not valid or match is None:
        example = "'512MB', '2GB'" + (" or '25%' of RAM" if allow_share else "")
        raise InvalidInputError(f"{what} {text!r} is not a size; write e.g. {example}")
    amount = float(match.group(1))
    if unit == "%":
        if not 0 < amount <= 100:
            raise InvalidInputError(f"{what} {text!r}: a share of RAM must be over 0% and at most 100%")
        return int(physical_memory() * amount / 100)
    size = int(amount * (_UNITS_B[unit] if unit else 1))
    if size <= 0:
        raise InvalidInputError(f"{what} {text!r} must be positive")
    return size


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:g} s"


def agent_limits(timeout_s: int, memory: str) -> QueryLimits:
    """The agent's limits from its config: timeout 0 means none; memory as in parse_bytes."""
    if timeout_s < 0:
        raise InvalidInputError(f"query timeout must be 0 (none) or a number of seconds, not {timeout_s}")
    return QueryLimits(float(timeout_s) or None, parse_bytes(memory, "query memory", allow_share=True))


def session_limits(settings: Mapping[str, str], ceiling: QueryLimits) -> QueryLimits:
    """The limits one statement runs under: the session's settings, checked against the agent's."""
    timeout, memory, isolation = ceiling.timeout_s, ceiling.memory_bytes, ceiling.isolation
    for raw_name, value in settings.items():
        name = _known(raw_name)
        if name == "isolation_level":
            isolation = parse_isolation(value, "isolation_level")
        elif name == "statement_timeout":
            timeout = parse_duration(value)
            if ceiling.timeout_s is not None and timeout > ceiling.timeout_s:
                raise InvalidInputError(
                    f"statement_timeout {value!r} is over this agent's limit of {format_duration(ceiling.timeout_s)} "
                    "(its --query-timeout); choose a shorter one"
                )
        else:
            memory = parse_bytes(value)
            if memory > ceiling.memory_bytes:
                raise InvalidInputError(
                    f"query_memory {value!r} is over this agent's limit of {format_bytes(ceiling.memory_bytes)} "
                    "(its --query-memory); choose a smaller one"
                )
    return QueryLimits(timeout, memory, isolation)


def parse_set(sql: str) -> SetStatement | None:
    """A SET or RESET of a query setting, or None when `sql` is another statement."""
    if (match := _SET.match(sql)) is not None:
        value = match.group("value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if not value:
            raise InvalidInputError(f"SET {match.group('name')} needs a value, e.g. SET statement_timeout = '10s'")
        return SetStatement(_known(match.group("name")), value)
    if (match := _RESET.match(sql)) is not None:
        name = match.group("name").strip("'\"").lower()
        return SetStatement("all" if name == "all" else _known(name), None)
    return None


def _known(name: str) -> str:
    key = name.strip("'\"").lower()
    key = _ALIASES.get(key, key)
    if key in SETTINGS:
        return key
    close = difflib.get_close_matches(key, SETTINGS, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise InvalidInputError(f"unknown setting {name!r}{hint} (settings: {', '.join(SETTINGS)})")
