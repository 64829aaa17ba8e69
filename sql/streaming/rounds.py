"""One job round as the window operator takes it (docs/DESIGN.md §8): every source partition's next
rows, in offset order, read before any of them may move the watermark (issue 10: firing
between partitions let the first one read carry the watermark past rows the round had read
from the others).

A round keeps, per partition, the rows with an event time and where they came from, so that
the operator can judge all of them in one vectorised pass and hand late rows back exactly as
they were given. It also computes each row's own-partition bound: one past the watermark its
partition had just before it (the largest event time of the partition's earlier rows −
delay), which makes lateness a property of each partition's row order, not of how rows were
cut into micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streamhouse.sql.streaming.assign import Bools, Ints, event_ms
from streamhouse.sql.windows.datafusion_sql import Timestamp

__all__ = ["MINUS_INF", "Round", "concat"]

MINUS_INF = -(2**62)  # a bound below every event time: no earlier row


@dataclass(frozen=True)
class _Piece:
    partition: int
    source: pa.Table  # the rows as the caller gave them (all their columns)
    rows: pa.Table  # the conformed rows that have an event time
    ms: Ints  # their event times, epoch ms
    positions: Ints | None  # where `rows` are in `source` (None: all of them, in order)


@dataclass(frozen=True)
class Round:
    """The rows of one round with an event time: `rows` / `ms` concatenate every partition's,
    partition by partition, each in offset order."""

    pieces: tuple[_Piece, ...]
    rows: pa.Table
    ms: Ints

    @classmethod
    def of(
        cls,
        batches: Mapping[int, pa.Table],
        conformed: Mapping[int, pa.Table],
        schema: pa.Schema,
        column: str,
        time_type: Timestamp,
    ) -> Round:
        """`conformed[p]` is `batches[p]` cut to the plan's columns and types (`schema`); rows
        whose `column` is NULL are in no window and are left out here."""
        pieces = []
        for partition, batch in conformed.items():
            ms, valid = event_ms(batch.column(column), time_type)
            positions: Ints | None = None
            if valid is not None:
                positions = np.flatnonzero(valid)
                batch, ms = batch.take(positions), ms[valid]
            pieces.append(_Piece(partition, batches[partition], batch, ms, positions))
        rows = concat([piece.rows for piece in pieces], schema)
        ms = np.concatenate([piece.ms for piece in pieces]) if pieces else np.zeros(0, dtype=np.int64)
        return cls(tuple(pieces), rows, ms)

    def tops(self) -> dict[int, int | None]:
        """Each partition's largest event time in the round (None: no row with a time)."""
        return {piece.partition: int(piece.ms.max()) if len(piece.ms) else None for piece in self.pieces}

    def own_bounds(self, watermark_of: Callable[[int], int | None], delay_ms: int) -> Ints:
        """Per row: one past its partition's watermark just before it — the largest event time
        of the partition's earlier rows (earlier rounds: `watermark_of(p)` + delay; earlier in
        this round: a running maximum) − delay. MINUS_INF where there is no earlier row."""
        bounds = []
        for piece in self.pieces:
            if not len(piece.ms):
                bounds.append(piece.ms)
                continue
            before = np.empty(len(piece.ms), dtype=np.int64)
            before[0] = MINUS_INF
            np.maximum.accumulate(piece.ms[:-1], out=before[1:])
            earlier = watermark_of(piece.partition)
            if earlier is not None:
                np.maximum(before, earlier + delay_ms, out=before)
            bounds.append(np.where(before == MINUS_INF, MINUS_INF, before - delay_ms + 1))
        return np.concatenate(bounds) if bounds else np.zeros(0, dtype=np.int64)

    def source_rows(self, mask: Bools, empty: pa.Table) -> pa.Table:
        """The rows as given (all their columns) that `mask`, over `rows`, selects; `empty`
        when it selects none and the round has no batch to take an empty slice of."""
        found, start = [], 0
        for piece in self.pieces:
            mine = mask[start : start + piece.rows.num_rows]
            start += piece.rows.num_rows
            if mine.any():
                found.append(
                    piece.source.take(np.flatnonzero(mine) if piece.positions is None else piece.positions[mine])
                )
        if found:
            return pa.concat_tables(found, promote_options="default") if len(found) > 1 else found[0]
        return self.pieces[0].source.slice(0, 0) if self.pieces else empty


def concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The tables (all of `schema`) as one; an empty table of `schema` when there are none."""
    if not tables:
        return schema.empty_table()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
