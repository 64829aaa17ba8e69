"""The window operator's snapshot bytes (docs/DESIGN.md §8): what a job's checkpoint stores so a
restarted runner continues exactly where the last one stopped.

    magic "SHWINOP1" | u32 header length | JSON header | state (Arrow IPC stream) [| emitted]

The header holds the job's fingerprint (a snapshot only restores into the same query), the
watermark that fired, the per-partition watermarks and idle clocks, and the counters. The state
is the rows of open windows (or their partial aggregates). In 'emit' = 'changes' mode the
header also gives the state's byte length, and a second IPC stream follows: what was last
emitted for each open window, tagged by the window's end.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.sql.streaming.plan import JobPlan

__all__ = ["Snapshot", "decode", "emitted_table", "emitted_windows", "encode", "fingerprint"]

_MAGIC = b"SHWINOP1"
_HEADER = struct.Struct("<I")
_WINDOW_END = "__sh_window_end"  # the window (its end, ms) of a snapshotted emitted row


@dataclass(frozen=True)
class Snapshot:
    header: dict[str, Any]  # job, fired_watermark, watermarks, counters (as written)
    state: pa.Table
    emitted: pa.Table | None  # changes mode: emitted rows with their window's end


def fingerprint(plan: JobPlan, *, changes: bool, partials: bool) -> str:
    """What a snapshot must match to be restored: the query and how its state is kept."""
    spec = plan.window
    shape: list[Any] = [plan.query_sql, list(plan.columns)]
    if spec is not None:
        shape += [spec.kind, spec.time_column, spec.size_ms, spec.step_ms, spec.offset_ms, list(spec.keys)]
    if changes:
        shape.append("emit=changes")
    if partials:
        shape.append("partials")
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:32]


def encode(header: dict[str, Any], state: pa.Table, state_schema: pa.Schema, emitted: pa.Table | None) -> bytes:
    """The snapshot bytes; `emitted` (changes mode) is written after the state."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, state_schema) as writer:
        writer.write_table(state)
    body = sink.getvalue().to_pybytes()
    if emitted is not None:  # then what was emitted for open windows, tagged by window end
        header["state_bytes"] = len(body)
        body += _ipc(emitted)
    text = json.dumps(header, separators=(",", ":")).encode()
    return _MAGIC + _HEADER.pack(len(text)) + text + body


def decode(data: bytes) -> Snapshot:
    """The parts of snapshot bytes; ValueError if they are not (whole) snapshot bytes."""
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + _HEADER.size:
        raise ValueError("not a window operator snapshot")
    start = len(_MAGIC) + _HEADER.size
    (length,) = _HEADER.unpack_from(data, len(_MAGIC))
    try:
        header = json.loads(data[start : start + length])
        body = data[start + length :]
        emitted = None
        if "state_bytes" in header:
            split = int(header["state_bytes"])
            body, emitted = body[:split], pa.ipc.open_stream(body[split:]).read_all()
        table = pa.ipc.open_stream(body).read_all()
    except (ValueError, pa.ArrowInvalid) as error:
        raise ValueError(f"corrupt window operator snapshot: {error}") from None
    return Snapshot(header, table, emitted)


def emitted_table(output_schema: pa.Schema, emitted: dict[int, pa.Table]) -> pa.Table:
    """What was emitted per open window (by its end) as one table, the end as a column."""
    schema = pa.schema([*output_schema, pa.field(_WINDOW_END, pa.int64())])
    pieces = [
        rows.append_column(_WINDOW_END, pa.array([end] * rows.num_rows, pa.int64()))
        for end, rows in sorted(emitted.items())
    ]
    return pa.concat_tables(pieces) if pieces else schema.empty_table()


def emitted_windows(emitted: pa.Table) -> dict[int, pa.Table]:
    """`emitted_table`'s inverse: the rows emitted for each window, by its end."""
    windows: dict[int, pa.Table] = {}
    if not emitted.num_rows:
        return windows
    ends = emitted.column(_WINDOW_END).to_numpy()
    rows = emitted.drop_columns([_WINDOW_END])
    for end in np.unique(ends).tolist():
        windows[int(end)] = rows.filter(pa.array(ends == end))
    return windows


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
