"""What every two-topic operator of a continuous query shares (docs/DESIGN.md §8, issue 17):
the window join (sql.streaming.join) and the interval join with its lookup, lifetime and
regular-join forms (sql.streaming.interval_join and its subclasses).

- Slots: the job reads (side, partition) pairs; `slots[i]` is slot i's pair. Idleness and
  watermarks are kept per slot by one `Watermarks`, fed each slot's largest event time
  minus its own topic's delay, so the job's watermark waits for both topics.
- Intake: a side's micro-batch is cut to the columns the plan keeps and cast to their
  declared types once (`conform`); late rows come back in one schema for both sides with
  a `source_topic` column (`late_rows_of`), so one dead-letter topic takes them.
- Running the user's query: each side's rows are registered under their table name in one
  DataFusion context for one run and deregistered after, whatever happens (`run_query`).
- Snapshots: magic | u32 header length | JSON header | one Arrow IPC stream per side. The
  header names the job by a fingerprint of its plan and the slots it read, so state is
  never restored into another query or over a topic that gained partitions.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import datafusion
import pyarrow as pa

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.catalog import partitioned
from streamhouse.sql.streaming.watermarks import Watermarks

__all__ = ["SOURCE_COLUMN", "Side", "TwoSidedOperator", "late_schema"]

SOURCE_COLUMN = "source_topic"  # the dead-letter column naming a late row's topic
_U32 = struct.Struct("<I")


class Side(Protocol):
    """One topic of a two-topic plan, as the shared steps need it."""

    @property
    def topic(self) -> str: ...

    @property
    def topic_schema(self) -> pa.Schema: ...

    @property
    def columns(self) -> tuple[str, ...]: ...

    @property
    def input_schema(self) -> pa.Schema: ...


class Plan(Protocol):
    @property
    def sides(self) -> Sequence[Side]: ...

    @property
    def query_sql(self) -> str: ...

    @property
    def output_schema(self) -> pa.Schema: ...


def late_schema(plan: Plan) -> pa.Schema:
    """The late rows' schema: `source_topic`, then every column of both topics (first side's
    type where both have one); a row has NULL in the columns its topic lacks."""
    fields = [pa.field(SOURCE_COLUMN, pa.string())]
    seen = {SOURCE_COLUMN}
    for side in plan.sides:
        for field in side.topic_schema:
            if field.name not in seen:
                seen.add(field.name)
                fields.append(field.with_nullable(True))
    return pa.schema(fields)


def fingerprint(shape: list[Any]) -> str:
    """A job's identity in its snapshots: the parts of its plan its state depends on."""
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:32]


class TwoSidedOperator:
    """The shell of a two-topic operator (see the module doc); subclasses hold the state."""

    _MAGIC = b""  # each operator's own snapshot magic
    _WHAT = "two-topic operator"  # named in snapshot errors

    def __init__(self, plan: Plan, idle_timeout_ms: int | None, slots: tuple[tuple[int, int], ...]) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self.slots = slots
        self._marks = Watermarks(0, idle_timeout_ms, range(len(slots)))
        self._rows_in = self._rows_out = self._late_rows = 0
        self._late_schema = late_schema(plan)
        self._ctx = datafusion.SessionContext()
        self._empty_output = plan.output_schema.empty_table()
        self._query_sql = plan.query_sql
        self._output = plan.output_schema
        self._two_sides: tuple[Side, ...] = tuple(plan.sides)

    @property
    def output_schema(self) -> pa.Schema:
        return self._output

    @property
    def late_schema(self) -> pa.Schema:
        return self._late_schema

    @property
    def watermark(self) -> int | None:
        return self._marks.emitted

    # -- idleness, as the job loop asks it ------------------------------------------------------
    def idle_partitions(self, now_ms: int) -> list[int]:
        """The slots that stop holding the watermark back at `now_ms` unless they have data."""
        return self._marks.idle_partitions(now_ms)

    def quiet_ms(self, slot: int, now_ms: int) -> int | None:
        return self._marks.quiet_ms(slot, now_ms)

    def watermark_would_advance(self, now_ms: int) -> bool:
        return self._marks.would_advance(now_ms)

    def slot_watermarks(self) -> dict[int, int | None]:
        return self._marks.partition_watermarks()

    # -- intake ---------------------------------------------------------------------------------
    def _conform(self, rows: pa.Table, index: int) -> pa.Table:
        side = self._two_sides[index]
        missing = [name for name in side.columns if name not in rows.column_names]
        if missing:
            raise ValueError(f"micro-batch lacks column(s) {', '.join(missing)} of topic {side.topic!r}")
        batch = rows.select(list(side.columns))
        schema = side.input_schema
        return batch if batch.schema.equals(schema) else batch.cast(schema)

    def _late_rows_of(self, rows: pa.Table, index: int) -> pa.Table:
        topic = self._two_sides[index].topic
        columns: list[Any] = []
        for field in self._late_schema:
            if field.name == SOURCE_COLUMN:
                columns.append(pa.array([topic] * rows.num_rows, pa.string()))
            elif field.name in rows.column_names:
                columns.append(rows.column(field.name).cast(field.type))
            else:
                columns.append(pa.nulls(rows.num_rows, field.type))
        return pa.Table.from_arrays(columns, schema=self._late_schema)

    # -- the user's query -------------------------------------------------------------------------
    def _run_query(self, tables: Mapping[str, pa.Table]) -> pa.Table:
        """Run the plan's query once over `tables` (table name → rows), cast to the output."""
        names = []
        try:
            for name, table in tables.items():
                self._ctx.register_record_batches(name, partitioned(table))
                names.append(name)
            result = self._ctx.sql(self._query_sql).to_arrow_table()
        except Exception as error:  # DataFusion raises plain Exceptions (e.g. a failed cast)
            raise SqlError(f"continuous query failed: {error}") from error
        finally:
            for name in names:
                self._ctx.deregister_table(name)
        return result if result.schema.equals(self._output) else result.cast(self._output)

    # -- snapshots ------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        raise NotImplementedError

    def _frame(self, header: dict[str, Any], tables: Sequence[tuple[pa.Table, pa.Schema]]) -> bytes:
        """The snapshot bytes: the shared header fields, `header`, then each side's rows."""
        bodies = [_ipc(table, schema) for table, schema in tables]
        full = {
            "job": self._fingerprint(),
            "slots": [list(slot) for slot in self.slots],
            "watermarks": self._marks.to_state(),
            **header,
            "sides": [len(body) for body in bodies],
        }
        text = json.dumps(full, separators=(",", ":")).encode()
        return self._MAGIC + _U32.pack(len(text)) + text + b"".join(bodies)

    def _unframe(self, data: bytes, *, sides: int = 2) -> tuple[dict[str, Any], list[pa.Table]]:
        """Check a snapshot is this job's over the same slots, take its watermarks, and give
        back its header and its `sides` tables (each side's rows, then any state of the
        operator's own)."""
        if not data.startswith(self._MAGIC) or len(data) < len(self._MAGIC) + _U32.size:
            raise ValueError(f"not a {self._WHAT} snapshot")
        (length,) = _U32.unpack_from(data, len(self._MAGIC))
        start = len(self._MAGIC) + _U32.size
        try:
            header = json.loads(data[start : start + length])
            at, tables = start + length, []
            for size in header["sides"]:
                tables.append(pa.ipc.open_stream(data[at : at + int(size)]).read_all())
                at += int(size)
        except (ValueError, KeyError, TypeError, pa.ArrowInvalid) as error:
            raise ValueError(f"corrupt {self._WHAT} snapshot: {error}") from None
        if header.get("job") != self._fingerprint():
            raise ValueError("the snapshot belongs to a different continuous query")
        if [tuple(slot) for slot in header["slots"]] != list(self.slots):
            raise ValueError("the snapshot was taken over other source partitions (a topic gained partitions?)")
        if len(tables) != sides:
            raise ValueError(f"corrupt {self._WHAT} snapshot: {len(tables)} sides")
        marks = Watermarks.from_state(header["watermarks"])
        marks.idle_timeout_ms = self.idle_timeout_ms
        self._marks = marks
        return header, tables


def _ipc(table: pa.Table, schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data
