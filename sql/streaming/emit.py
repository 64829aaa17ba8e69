"""What windows emit (docs/DESIGN.md §8): the job's query run by DataFusion over the rows of
the windows being computed, each row annotated with its window's columns (window_start,
window_end, window_time), so a fired window's output is what the ad-hoc query returns for the
window's rows. Windows computed in the same step are computed together by one run of
`plan.query_sql`; changes mode (sql.streaming.changes) needs each window's result apart, which
`per_window` gives from one run too when the output tells windows apart.
"""

from __future__ import annotations

import datafusion
import numpy as np
import pyarrow as pa

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.catalog import partitioned
from streamhouse.sql.streaming.assign import Ints, event_ms, window_columns
from streamhouse.sql.streaming.plan import WINDOWED_TABLE, JobPlan, quoted_table

__all__ = ["WindowQuery"]


class WindowQuery:
    """One job's query over windowed rows, on its own DataFusion session."""

    def __init__(self, plan: JobPlan) -> None:
        self.plan = plan
        self._ctx = datafusion.SessionContext()

    def windows(self, table: pa.Table, rows: Ints, starts: Ints, ends: Ints) -> pa.Table:
        """The output of the windows [starts, ends) holding `table`'s `rows`, in one run."""
        return self.run(*self.annotate(table, rows, starts, ends))

    def annotate(self, table: pa.Table, rows: Ints, starts: Ints, ends: Ints) -> tuple[pa.Table, pa.Table | None]:
        """The windowed rows (`table`'s `rows` with their window columns) and, when the query
        reads the topic itself, the source rows they come from (once each)."""
        spec = self.plan.window
        assert spec is not None
        windowed = table.take(rows)
        for name, column in zip(
            ("window_start", "window_end", "window_time"), window_columns(starts, ends, spec.time_type), strict=True
        ):
            windowed = windowed.append_column(name, column)
        raw = None
        if self.plan.reads_raw:
            present = np.zeros(table.num_rows, dtype=np.bool_)
            present[rows] = True
            raw = table.filter(pa.array(present))
        return windowed, raw

    def per_window(self, table: pa.Table, rows: Ints, starts: Ints, ends: Ints) -> dict[int, pa.Table]:
        """Each window's (by its end) query result. One run over all of them when the output
        carries window_start and window_end to tell them apart; else one run per window."""
        windows = sorted({int(e) for e in np.unique(ends)})
        schema = self.plan.output_schema
        start_type = schema.field("window_start").type if "window_start" in schema.names else None
        end_type = schema.field("window_end").type if "window_end" in schema.names else None
        if len(windows) > 1 and isinstance(start_type, pa.TimestampType) and isinstance(end_type, pa.TimestampType):
            result = self.windows(table, rows, starts, ends)
            start_of = dict(zip(ends.tolist(), starts.tolist(), strict=True))
            first, last = result.column("window_start"), result.column("window_end")
            out_start, _ = event_ms(first, start_type)
            out_end, _ = event_ms(last, end_type)
            if (
                first.null_count == 0
                and last.null_count == 0
                and all(start_of.get(e) == s for s, e in zip(out_start.tolist(), out_end.tolist(), strict=True))
            ):
                return {end: result.filter(pa.array(out_end == end)) for end in windows}
        found: dict[int, pa.Table] = {}
        for end in windows:
            mine = ends == end
            found[end] = self.windows(table, rows[mine], starts[mine], ends[mine])
        return found

    def run(self, windowed: pa.Table | None, raw: pa.Table | None) -> pa.Table:
        """`plan.query_sql` over the windowed rows and/or the raw topic rows, cast to the
        plan's output schema; SqlError if DataFusion fails (e.g. a cast)."""
        names = []
        try:
            if windowed is not None:
                self._ctx.register_record_batches(WINDOWED_TABLE, partitioned(windowed))
                names.append(WINDOWED_TABLE)
            if raw is not None:
                self._ctx.register_record_batches(quoted_table(self.plan.topic), partitioned(raw))
                names.append(quoted_table(self.plan.topic))
            result = self._ctx.sql(self.plan.query_sql).to_arrow_table()
        except Exception as error:  # DataFusion raises plain Exceptions (e.g. a failed cast)
            raise SqlError(f"continuous query failed: {error}") from error
        finally:
            for name in names:
                self._ctx.deregister_table(name)
        schema = self.plan.output_schema
        return result if result.schema.equals(schema) else result.cast(schema)
