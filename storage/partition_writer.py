"""One partition's write path: assign offsets → WAL → buffer, then roll the buffer into a
segment → upload (never overwrite) → fenced commit → release the WAL entries it covers.

The writer holds a lease epoch. A commit refused by the metadata store (another holder
took the partition) fences the writer for good: it drops its buffer and every later call
raises FencedError, so a stale leader can never acknowledge or commit again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from streamhouse.storage.batch_codec import decode_batch, encode_batch
from streamhouse.storage.errors import (
    BackpressureError,
    FencedError,
    InvalidInputError,
    ObjectExistsError,
    OffsetConflictError,
    StreamHouseError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.json_values import with_declared_columns
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.records import RECORD_SCHEMA, assign_offsets
from streamhouse.storage.segment_format import EncodedSegment, encode_segment
from streamhouse.storage.value_schema import parse_value_schema
from streamhouse.storage.wal import WriteAheadLog
from streamhouse.storage.wal_format import WalEntry


@dataclass(frozen=True)
class WriterConfig:
    roll_bytes: int = 64 << 20  # DESIGN §4: roll at 64 MiB …
    roll_age_ms: int = 10_000  # … or when the oldest buffered record is this old
    row_group_bytes: int = 1 << 20
    max_buffer_bytes: int = 512 << 20  # over this, produce gets BackpressureError


def segment_key(topic: str, partition: int, base_offset: int, epoch: int) -> str:
    return f"topics/{topic}/{partition:05d}/{base_offset:020d}-{epoch}.parquet"


class PartitionWriter:
    def __init__(
        self,
        topic: TopicInfo,
        partition: int,
        *,
        holder: str,
        epoch: int,
        metadata: MetadataStore,
        store: ObjectStore,
        wal: WriteAheadLog,
        durable_end: int,
        config: WriterConfig | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.holder = holder
        self.epoch = epoch
        self.config = config or WriterConfig()
        self._metadata = metadata
        self._store = store
        self._wal = wal
        self._lock = asyncio.Lock()  # offset assignment, WAL order and buffer order
        self._roll_lock = asyncio.Lock()  # one roll at a time
        self._batches: list[pa.RecordBatch] = []
        self._pending_cut = 0  # batches of an upload whose commit did not complete
        # What readers derived from a buffered batch (SQL: its decoded value columns), by the
        # batch's base offset; dropped with the batch when it is flushed.
        self.derived: dict[int, pa.Table] = {}
        self._value_schema = parse_value_schema(topic.value_schema)
        self._buffered_bytes = 0
        self._oldest_ms: float | None = None
        self.durable_end = durable_end  # committed in metadata
        self.next_offset = durable_end  # next offset to assign
        self._fenced: FencedError | None = None
        self.segments_committed = 0

    # -- recovery ---------------------------------------------------------------------------
    @classmethod
    async def recover(
        cls,
        topic: TopicInfo,
        partition: int,
        *,
        holder: str,
        epoch: int,
        metadata: MetadataStore,
        store: ObjectStore,
        wal: WriteAheadLog,
        replayed: Sequence[WalEntry],
        config: WriterConfig | None = None,
    ) -> PartitionWriter:
        """A writer for a freshly acquired lease, re-buffering this partition's WAL entries
        that are not yet in a committed segment (acknowledged records survive a crash)."""
        end = await metadata.get_end_offset(topic.name, partition)
        segments = await metadata.list_segments(topic.name, partition, max(0, end - 1), end)
        # Entries older than the last committed segment's epoch belong to a leadership that
        # another holder superseded: their offsets may have been reused, so they are dropped.
        floor_epoch = segments[-1].epoch if segments else 0
        writer = cls(
            topic,
            partition,
            holder=holder,
            epoch=epoch,
            metadata=metadata,
            store=store,
            wal=wal,
            durable_end=end,
            config=config,
        )
        mine = sorted(
            (
                e
                for e in replayed
                if e.topic_id == topic.topic_id
                and e.partition == partition
                and e.epoch >= floor_epoch
                and e.base_offset + e.record_count > end
            ),
            key=lambda e: e.base_offset,
        )
        for entry in mine:
            if entry.base_offset > writer.next_offset:
                break  # a gap: nothing after it can have been acknowledged in order
            batch = decode_batch(entry.payload, source=f"WAL entry {topic.name}/{partition}@{entry.base_offset}")
            batch = assign_offsets(batch, entry.base_offset)
            skip = writer.next_offset - entry.base_offset
            if skip >= batch.num_rows:
                continue
            writer._buffer(batch.slice(skip))
            writer.next_offset = entry.base_offset + batch.num_rows
        return writer

    # -- produce ------------------------------------------------------------------------------
    async def append(self, batch: pa.RecordBatch, payload: bytes | None = None) -> int:
        """Assign offsets, write the WAL entry, buffer; returns the base offset once the
        WAL holds the entry as its fsync policy promises.

        `payload`: the same records already framed by batch_codec (a produce request's bytes),
        written to the WAL as they are instead of re-encoding; their offset column is ignored,
        since replay assigns base + arange from the entry header."""
        if not batch.schema.equals(RECORD_SCHEMA):
            raise InvalidInputError("batch does not have the record schema")
        n = batch.num_rows
        if n == 0:
            return self.next_offset
        async with self._lock:
            self._check_usable()
            if self._buffered_bytes + batch.nbytes > self.config.max_buffer_bytes:
                raise BackpressureError(
                    f"{self.topic.name}/{self.partition}: {self._buffered_bytes} bytes buffered, "
                    f"limit {self.config.max_buffer_bytes}; segments are not being uploaded fast enough"
                )
            base = self.next_offset
            batch = assign_offsets(batch, base)
            # Shielded: once the WAL entry may be written, the offsets are spent. A cancelled
            # caller must not leave them unassigned, or the next append would reuse them.
            await asyncio.shield(self._write_and_buffer(batch, base, payload))
        return base

    async def _write_and_buffer(self, batch: pa.RecordBatch, base: int, payload: bytes | None) -> None:
        payload = encode_batch(batch) if payload is None else payload
        # On failure the offsets stay free: the WAL truncates a failed write back, and a failed
        # fsync stops the WAL for good, so no later entry can reuse them on disk.
        await self._wal.append(self.topic.topic_id, self.partition, self.epoch, base, batch.num_rows, payload)
        self._buffer(batch)
        self.next_offset = base + batch.num_rows

    def _buffer(self, batch: pa.RecordBatch) -> None:
        if not self._batches:
            self._oldest_ms = time.monotonic() * 1000
        self._batches.append(batch)
        self._buffered_bytes += batch.nbytes

    def _check_usable(self) -> None:
        if self._fenced is not None:
            raise self._fenced

    # -- reads of the unflushed buffer ----------------------------------------------------------
    @property
    def buffer_start(self) -> int:
        """First offset served from memory (everything below is in committed segments)."""
        return self.durable_end

    def buffered_batches(self, start: int, end: int) -> list[tuple[int, pa.RecordBatch]]:
        """Whole buffered batches overlapping [start, end), with their base offsets (for
        callers that cache something per batch, like decoded value columns)."""
        out: list[tuple[int, pa.RecordBatch]] = []
        for batch in list(self._batches):
            base = batch.column(0)[0].as_py() if batch.num_rows else 0
            if base < end and base + batch.num_rows > start:
                out.append((base, batch))
        return out

    def read_buffer(self, start: int, end: int) -> list[pa.RecordBatch]:
        """Buffered records in [start, end), as zero-copy slices."""
        out: list[pa.RecordBatch] = []
        for batch in list(self._batches):
            base = batch.column(0)[0].as_py() if batch.num_rows else 0
            stop = base + batch.num_rows
            if stop <= start or base >= end:
                continue
            lo = max(start, base) - base
            hi = min(end, stop) - base
            out.append(batch.slice(lo, hi - lo))
        return out

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    def should_roll(self) -> bool:
        if not self._batches:
            return False
        if self._buffered_bytes >= self.config.roll_bytes:
            return True
        assert self._oldest_ms is not None
        return time.monotonic() * 1000 - self._oldest_ms >= self.config.roll_age_ms

    # -- roll ---------------------------------------------------------------------------------
    async def flush(self) -> SegmentInfo | None:
        """Roll everything buffered into segments and commit them (fenced); returns the last."""
        async with self._roll_lock:
            info: SegmentInfo | None = None
            # A retried cut is followed by one more round for what was buffered after it.
            for _ in range(2 if self._pending_cut else 1):
                self._check_usable()
                async with self._lock:
                    # An attempt that may have uploaded its object but not committed (failed or
                    # cancelled commit) is retried with exactly the same records: its object key
                    # is taken, and only identical bytes may reuse it.
                    cut = self._pending_cut or len(self._batches)
                    batches = self._batches[:cut]
                if not batches:
                    return info
                self._pending_cut = cut
                try:
                    info = await self._upload_and_commit(batches)
                except (FencedError, OffsetConflictError) as exc:
                    await self.fence(str(exc))
                    raise self._fenced from exc  # type: ignore[misc]
                async with self._lock:
                    self._pending_cut = 0
                    del self._batches[: len(batches)]
                    for base in [b for b in self.derived if b < info.end_offset]:
                        del self.derived[base]
                    self._buffered_bytes = sum(b.nbytes for b in self._batches)
                    self._oldest_ms = time.monotonic() * 1000 if self._batches else None
                    self.durable_end = info.end_offset
                self.segments_committed += 1
                await self._wal.release({(self.topic.topic_id, self.partition): info.end_offset})
            return info

    def _encode(self, batches: list[pa.RecordBatch]) -> EncodedSegment:
        """Runs in the IO pool: declared value columns are decoded from JSON here, once, so
        scans of committed data never parse JSON (DESIGN §7)."""
        table = pa.Table.from_batches(batches, schema=RECORD_SCHEMA)
        extra: dict[str, str] = {}
        if self._value_schema is not None:
            table, extra = with_declared_columns(table, self._value_schema)
        return encode_segment(
            table,
            topic=self.topic.name,
            partition=self.partition,
            epoch=self.epoch,
            row_group_bytes=self.config.row_group_bytes,
            extra_metadata=extra,
        )

    async def _upload_and_commit(self, batches: list[pa.RecordBatch]) -> SegmentInfo:
        encoded = await run_blocking(self._encode, batches)
        key = segment_key(self.topic.name, self.partition, encoded.base_offset, self.epoch)
        try:
            await self._store.put(key, encoded.data, if_absent=True)
        except ObjectExistsError:
            # A retry after a failed commit in the same epoch: the same offsets and epoch hold
            # the same records, so the object must be byte-identical to be reused.
            if await self._store.get(key) != encoded.data:
                raise StreamHouseError(f"segment object {key} exists with different content") from None
        info = encoded.info(topic=self.topic.name, partition=self.partition, object_key=key, epoch=self.epoch)
        try:
            await self._metadata.commit_segment(info, self.holder, self.epoch)
        except (FencedError, OffsetConflictError):
            await self._store.delete(key)  # an orphan of a stale epoch; nobody references it
            raise
        return info

    async def fence(self, reason: str) -> None:
        """Stop for good: drop the buffer; every later call raises FencedError."""
        async with self._lock:
            self._fenced = FencedError(
                f"{self.topic.name}/{self.partition}: epoch {self.epoch} of {self.holder} is fenced ({reason}); "
                f"{self.next_offset - self.durable_end} unflushed records dropped"
            )
            self._batches.clear()
            self.derived.clear()
            self._buffered_bytes = 0

    @property
    def fenced(self) -> bool:
        return self._fenced is not None

    async def close(self, *, flush: bool = True) -> None:
        """Graceful shutdown: flush what is buffered (unless fenced)."""
        if flush and not self.fenced:
            await self.flush()
