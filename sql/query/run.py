"""Running one DataFusion query under its limits (query_limits.QueryLimits).

    await run_query(tables, sql, limits, spill_dir, streams) -> pa.Table

Memory: each statement gets its own SessionContext whose memory pool is the statement's cap
minus the Arrow tables it was fed (those are already in memory and DataFusion does not count
them: the leaders' unflushed tails, `latest.` tables) and minus what the topic streams may hold
at once (sql/query/stream.py: a few decoded chunks each, `stream_bytes`). The pool is a fair
spill pool with a disk manager under `spill_dir`, so sorts, grouped aggregates and joins that
can spill do; an operator that cannot ends with
QueryMemoryExceededError instead of growing the process. Result batches are counted against
the same cap as they arrive: a projection's output is not in DataFusion's pool.

Time and cancellation: planning runs in the blocking pool (it is short), but execution is
driven from the event loop through the stream's `__anext__`, which awaits a future on
DataFusion's own tokio runtime. Cancelling the awaiting task (a timeout, a gRPC client that
cancelled or disconnected, Ctrl-C in the embedded SDK) drops that Rust future and with it the
whole plan, mid-operator: the work stops, the memory is freed, and the event loop was never
blocked. A thread running `collect()` could not be stopped at all.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext
from datafusion.record_batch import RecordBatchStream

from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.limits import QueryLimits, format_bytes
from streamhouse.sql.query.native import SETTINGS as NATIVE_SETTINGS
from streamhouse.sql.query.native import NativeTopic, scanned_columns
from streamhouse.sql.query.stream import TopicDataset
from streamhouse.sql.query.unsliced import unsliced
from streamhouse.storage.errors import QueryMemoryExceededError, StreamHouseError
from streamhouse.storage.executor import run_blocking

__all__ = ["clean_message", "clear_spill", "run_query"]

# DataFusion needs some pool to plan and run anything at all; below this, the cap is reported
# as exceeded by the input alone rather than failing obscurely inside an operator.
_MIN_POOL_BYTES = 1 << 20
# Measured on 2 M rows: grouped aggregates and filters over one partition of 1,024-row batches
# take 1-2 ms longer than over 4 partitions of one batch each (segment decoding dominates).
_SOURCE_BATCH_ROWS = 1024
_HINT = "raise it with SET query_memory (up to the agent's --query-memory) or make the query read less"


async def run_query(
    tables: dict[str, pa.Table],
    sql: str,
    limits: QueryLimits,
    spill_dir: Path | None,
    streams: Mapping[str, TopicDataset] | None = None,
    stream_bytes: int = 0,
    natives: Mapping[str, NativeTopic] | None = None,
) -> pa.Table:
    """Run `sql` over `tables` (name → table) and `streams` (name → topic read as pulled)
    under `limits.memory_bytes`; raises SqlError for errors in the query,
    QueryMemoryExceededError over the cap, a stream's own read error (e.g. CorruptDataError)
    as it is. The caller owns the time limit: cancelling this coroutine stops the query.
    `natives`: topics whose segment files DataFusion reads itself (sql/query/native.py); their
    checks run beside the query, and no answer is returned before they passed."""
    streams = dict(streams or {})
    natives = dict(natives or {})
    rests = [n.rest for n in natives.values() if n.rest is not None]
    input_bytes = sum(t.nbytes for t in tables.values()) + sum(s.stream.tail_bytes for s in [*streams.values(), *rests])
    pool = limits.memory_bytes - input_bytes - stream_bytes
    if pool < _MIN_POOL_BYTES:
        raise QueryMemoryExceededError(
            f"query memory limit of {format_bytes(limits.memory_bytes)} exceeded: the topics read take "
            f"{format_bytes(input_bytes + stream_bytes)} before the query starts (unflushed rows and read "
            f"buffers); {_HINT}, e.g. a WHERE on _timestamp, _offset or the event time so fewer segments are read"
        )
    try:
        schema, stream, scanned = await run_blocking(_start, tables, streams, natives, sql, pool, spill_dir)
    except BaseException:
        for native in natives.values():
            native.close()
        raise
    # Only what the plan's scans read is checked (a superset: scanned_columns).
    checks = [asyncio.ensure_future(n.verify(scanned)) for n in natives.values()]
    batches: list[pa.RecordBatch] = []
    reserved = held = input_bytes + stream_bytes
    try:
        async for batch in stream:
            arrow = batch.to_pyarrow()
            held += arrow.nbytes
            if held > limits.memory_bytes:
                raise QueryMemoryExceededError(
                    f"query memory limit of {format_bytes(limits.memory_bytes)} exceeded: the result grew past "
                    f"{format_bytes(held - reserved)} with {format_bytes(reserved)} of topic data held; "
                    f"{_HINT}, or add a LIMIT"
                )
            batches.append(arrow)
        await asyncio.gather(*checks)  # the answer stands only on checked bytes
    except BaseException as exc:
        # The stream owns the running plan (DataFusion's spawned tasks run until it is freed),
        # and this traceback runs through frames that hold it: whoever keeps the exception (the
        # caller, a test) would keep the query running. Measured: minutes of CPU after a
        # timeout. So the traceback goes, and the reference in this frame (finally).
        exc.__traceback__ = None
        if checks and isinstance(exc, Exception) and not isinstance(exc, StreamHouseError):
            # DataFusion failed: if it read damaged bytes, the check says which (it ends soon).
            found = await asyncio.gather(*checks, return_exceptions=True)
            damaged = next((e for e in found if isinstance(e, StreamHouseError)), None)
            if damaged is not None:
                raise damaged from None
        for check in checks:
            check.cancel()
        sources = [*streams.values(), *rests]
        failed = next((s.stream.error for s in sources if s.stream.error is not None), None)
        if failed is not None and isinstance(exc, Exception) and not isinstance(exc, StreamHouseError):
            raise failed from None  # a topic read failed: its own error, not DataFusion's text of it
        if isinstance(exc, Exception) and not isinstance(exc, StreamHouseError):
            # DataFusion raises plain Exceptions whose text says what and where.
            raise _translate(exc, limits) from None
        raise
    finally:
        del stream
        for native in natives.values():
            native.close()  # its links to the segment files
    return pa.Table.from_batches(batches, schema=batches[0].schema if batches else schema)


def clear_spill(spill_dir: Path) -> None:
    """Remove spill files a killed process left behind (DataFusion deletes its own when a query
    ends, but not when the process dies mid-query). Call before any query runs."""
    if spill_dir.is_dir():
        for entry in spill_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _start(
    tables: dict[str, pa.Table],
    streams: dict[str, TopicDataset],
    natives: dict[str, NativeTopic],
    sql: str,
    pool: int,
    spill_dir: Path | None,
) -> tuple[pa.Schema, RecordBatchStream, set[str] | None]:
    runtime = RuntimeEnvBuilder().with_fair_spill_pool(pool)
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
        runtime = runtime.with_disk_manager_specified(spill_dir)
    else:
        runtime = runtime.with_disk_manager_os()
    settings: dict[str, str] = {}
    if natives:
        # DataFusion reads each file's last metadata_size_hint bytes for its footer (512 KiB by
        # default, 5x the bench's largest footer): the exact largest length reads no more.
        longest = max(f.ref.footer_length for n in natives.values() for f in n.files)
        settings = {**NATIVE_SETTINGS, "datafusion.execution.parquet.metadata_size_hint": str(longest)}
    ctx = SessionContext(SessionConfig(settings), runtime)
    for name, table in tables.items():
        ctx.register_record_batches(name, [_source_batches(table)])
    for name, dataset in streams.items():
        ctx.register_dataset(name, dataset)
    try:
        for name, native in natives.items():
            ctx.register_view(name, native.frame(ctx, name))
        df = ctx.sql(sql)
        scanned = scanned_columns(df.optimized_logical_plan()) if natives else None
        return df.schema(), df.execute_stream(), scanned
    except Exception as exc:
        raise _translate(exc, None) from None


def _source_batches(table: pa.Table) -> list[pa.RecordBatch]:
    """One input partition of zero-copy slices of at most _SOURCE_BATCH_ROWS rows. Why: a
    DataFusion task yields (and so can be dropped) only when a source or an exchange runs out of
    budget, every 128 batches; operators between them do not (joins: apache/datafusion#19358).
    With one input partition DataFusion spreads the rows over its cores with a round-robin
    exchange, so every join and aggregate sits behind an exchange; small batches keep the work
    between two yields small. Measured: a cancelled 3-way cross join of 2,600 rows stops at
    once this way, and runs on for over a minute with the rows in 4 input partitions."""
    if table.num_rows == 0:
        return [pa.RecordBatch.from_pylist([], schema=table.schema)]
    return [unsliced(b) for b in table.to_batches(max_chunksize=_SOURCE_BATCH_ROWS)]  # ROW-in-ROW slices panic


def _translate(exc: Exception, limits: QueryLimits | None) -> StreamHouseError:
    message = clean_message(str(exc))
    if "Resources exhausted" in message:
        cap = format_bytes(limits.memory_bytes) if limits is not None else "the query memory limit"
        detail = message.replace("Resources exhausted: ", "")
        return QueryMemoryExceededError(f"query memory limit of {cap} exceeded: {detail}; {_HINT}")
    return SqlError(message)


def clean_message(message: str) -> str:
    for prefix in ("DataFusion error: ", "Execution error: "):
        message = message.replace(prefix, "")
    return message.strip()
