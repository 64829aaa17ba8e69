"""A continuous query's `WITH (…)` options: one place that knows the keys, parses the values
and checks them, used when CREATE MATERIALIZED VIEW / INSERT INTO is parsed (so a bad value is
refused then, naming the option, and nothing is created) and when the job runner starts the
job (so a value stored by an older version that does not parse fails that one job, clearly)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from streamhouse.sql.errors import SqlError

# What a job emits: one result per window, or an update stream (sql/streaming/changes.py).
EMIT_MODES = ("final", "changes")
START_POSITIONS = ("earliest", "latest")
ISOLATION_LEVELS = ("read_committed", "read_uncommitted")  # storage/metadata/isolation.py LEVELS
# key -> one line of help (the error for an unknown key lists them)
OPTIONS = {
    "emit": "'final' (one result per window) or 'changes' (an update stream)",
    "dead-letter": "a topic for late rows",
    "idle-timeout": "how long a partition with nothing to read holds the watermark back, e.g. '10s'",
    "checkpoint-interval": "how often the job commits output and offsets, e.g. '1s'",
    "start": "'earliest' or 'latest': where a new job starts reading",
    "state.ttl": "how long (event time) a regular join keeps each side's rows, e.g. '1 h'",
    "isolation.level": "'read_committed' (Kafka transactions' committed rows only) or 'read_uncommitted' (all)",
}
# Set by the agent at CREATE under auth, never in WITH (…): the creating principal, "org/name",
# whose rights the job runs with (engine/jobs/rights.py). Shown by SHOW JOBS with the options.
CREATOR = "creator"
# Below these the job would spend its time checkpointing or declare partitions idle between two
# reads; above a week a timer is a mistake (and large enough numbers overflow the clock).
# A state TTL under a second would drop rows before their partner can arrive; over a year the
# state is unbounded in practice.
_BOUNDS_MS = {
    "idle-timeout": (1, 7 * 86_400_000),
    "checkpoint-interval": (10, 86_400_000),
    "state.ttl": (1_000, 366 * 86_400_000),
}
_UNITS_MS = {"ms": 1, "s": 1_000, "sec": 1_000, "min": 60_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h|d)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class JobOptions:
    emit: str = "final"
    dead_letter: str | None = None
    idle_timeout_ms: int = 10_000
    checkpoint_interval_ms: int = 1_000
    start: str = "earliest"
    batch_rows: int = 50_000
    state_ttl_ms: int | None = None  # a regular join's state TTL (sql/streaming/regular_join.py)
    creator: str | None = None  # CREATOR: whose rights the job runs with (None: not limited)
    # Which source rows of Kafka transactions the job reads: committed ones (its output is then
    # exactly-once), or, for debugging, also those of open and aborted transactions.
    isolation: str = "read_committed"


def parse_job_options(options: Mapping[str, str], job: str = "job") -> JobOptions:
    """The options as values; SqlError naming the job, the option and what it takes for an
    unknown key (with the closest known one) or a value that does not parse or is out of range."""
    for key in options:
        if key not in OPTIONS and key != CREATOR:
            close = difflib.get_close_matches(key, list(OPTIONS), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(OPTIONS)}"
            raise SqlError(f"{job}: unknown option {key!r}; {hint}")
    return JobOptions(
        emit=_choice(options, "emit", EMIT_MODES, job),
        dead_letter=options.get("dead-letter") or None,
        idle_timeout_ms=_duration(options, "idle-timeout", "10s", job),
        checkpoint_interval_ms=_duration(options, "checkpoint-interval", "1s", job),
        start=_choice(options, "start", START_POSITIONS, job),
        state_ttl_ms=_duration(options, "state.ttl", "", job) if options.get("state.ttl") else None,
        creator=options.get(CREATOR) or None,
        isolation=_choice(options, "isolation.level", ISOLATION_LEVELS, job),
    )


def _choice(options: Mapping[str, str], key: str, allowed: tuple[str, ...], job: str) -> str:
    value = options.get(key, allowed[0]).strip().lower()
    if value not in allowed:
        raise SqlError(f"{job}: option {key!r} must be one of {', '.join(allowed)}, not {options[key]!r}")
    return value


def _duration(options: Mapping[str, str], key: str, default: str, job: str) -> int:
    """'1s', '500ms', '2 min', '1h', or a bare number of milliseconds."""
    text = options.get(key, default)
    match = _DURATION.match(text)
    if match is None:
        raise SqlError(f"{job}: option {key!r} must be a duration such as '10s', '500ms' or '2min', not {text!r}")
    ms = int(float(match.group(1)) * _UNITS_MS[(match.group(2) or "ms").lower()])
    low, high = _BOUNDS_MS[key]
    if not low <= ms <= high:
        raise SqlError(f"{job}: option {key!r} = {text!r} is out of range ({low:,} ms to {high:,} ms)")
    return ms
