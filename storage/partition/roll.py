"""Rolling a partition's buffer into segments (docs/DESIGN.md §4): cut → encode → upload (never
overwrite) → fenced commit → trim the buffer → release the WAL entries the segment covers.

Rolls are pipelined two deep: while one roll commits, the next may already cut what arrived
since, encode it and upload it. Under durable acks (every acknowledgement waits for a commit)
a roll's encode and upload no longer wait for the previous roll's metadata commit, so a busy
partition's durable latency is about one upload plus one commit instead of two whole rolls.

Ordering and retries: segments commit strictly in offset order (`_commit_lock`, taken while
the roll still holds `_roll_lock`, so at most one roll commits and one uploads). A roll that
uploaded but did not commit keeps its cut (`_Cut`) at the head of `_cuts`: its retry takes
exactly the same batches and columns, because its object key (base offset + epoch) is taken
and only identical bytes may reuse it. A roll whose predecessor failed does not commit (that
would leave a gap); its cut stays too and is retried after the predecessor's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from streamhouse.storage.errors import (
    EarlierRollFailedError,
    FencedError,
    ObjectExistsError,
    OffsetConflictError,
    StreamHouseError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.metadata.txn_reads import shared_reads
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.records.schema import RECORD_SCHEMA
from streamhouse.storage.segment.format import EncodedSegment, encode_segment
from streamhouse.storage.values.json_decode import with_declared_columns
from streamhouse.storage.values.registry_formats import decode_stored
from streamhouse.storage.values.schema import REGISTRY_FORMATS, ValueSchema
from streamhouse.storage.wal.log import WriteAheadLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterConfig:
    roll_bytes: int = 64 << 20  # docs/DESIGN.md §4: roll at 64 MiB …
    roll_age_ms: int = 10_000  # … or when the oldest buffered record is this old
    row_group_bytes: int = 1 << 20
    max_buffer_bytes: int = 512 << 20  # over this, produce gets BackpressureError


def segment_key(topic: str, partition: int, base_offset: int, epoch: int) -> str:
    return f"topics/{topic}/{partition:05d}/{base_offset:020d}-{epoch}.parquet"


@dataclass
class _Cut:
    """Leading buffered batches taken by one roll. Mutable on purpose: `busy` is the claim of
    the roll working on it; the cut outlives a failed roll, for its exact retry."""

    count: int
    schema: ValueSchema | None  # the columns it is encoded with, fixed for its retries
    busy: bool = True


class SegmentRoller:
    """The roll half of PartitionWriter (a mixin: it works on the writer's buffer and locks,
    declared here as the writer sets them)."""

    topic: TopicInfo
    partition: int
    holder: str
    epoch: int
    config: WriterConfig
    durable_end: int
    segments_committed: int
    derived: dict[int, pa.Table]
    _metadata: MetadataStore
    _store: ObjectStore
    _wal: WriteAheadLog
    _lock: asyncio.Lock
    _roll_lock: asyncio.Lock
    _commit_lock: asyncio.Lock
    _batches: list[pa.RecordBatch]
    _sizes: list[int]  # nbytes of each of _batches
    _cuts: list[_Cut]
    _unlogged: list[tuple[int, pa.RecordBatch, bytes | None]]
    _value_schema: ValueSchema | None
    _buffered_bytes: int
    _oldest_ms: float | None
    _fenced: FencedError | None
    _producer_batches: list[ps.ProducerBatch]
    _durable_producers: dict[int, ps.ProducerState]

    # Defined by PartitionWriter (which overrides these): what the roll calls back.
    def _check_usable(self) -> None:
        raise NotImplementedError

    def _committed_producers(self, end: int) -> dict[int, ps.ProducerState]:
        raise NotImplementedError

    async def fence(self, reason: str) -> None:
        raise NotImplementedError

    async def flush(
        self,
        committed: Callable[[SegmentInfo], None] | None = None,
        staged: Callable[[], None] | None = None,
    ) -> SegmentInfo | None:
        """Roll everything buffered into segments and commit them (fenced); returns the last
        this call committed. When it returns, everything buffered at the call is committed.

        `committed` is called with each segment as soon as its commit has moved `durable_end`,
        before the WAL entries it covers are released: a durable ack needs the commit, not the
        release (a WAL rotation: two fsyncs). `staged` is called once this call's roll has
        uploaded and waits only for its commit: the moment a next roll may start."""
        info: SegmentInfo | None = None
        # Failed cuts first (oldest first, same records), then one round for the rest.
        for _ in range(len(self._cuts) + 1):
            async with self._roll_lock:
                self._check_usable()
                async with self._lock:
                    cut, batches = self._claim()
                if cut is None:
                    break
                try:
                    encoded, key = await self._upload(batches, cut.schema)
                    await self._commit_lock.acquire()
                except BaseException:
                    cut.busy = False
                    raise
            if staged is not None:
                staged()
                staged = None
            try:
                info = await self._commit_cut(cut, encoded, key)
            except BaseException:
                cut.busy = False
                raise
            finally:
                self._commit_lock.release()
            self.segments_committed += 1
            if committed is not None:
                committed(info)
            await self._wal.release({(self.topic.topic_id, self.partition): info.end_offset})
        # A roll another call started (uploading or committing) may hold records buffered
        # before this call: the lock is fair, so holding it once means that roll has ended.
        async with self._commit_lock:
            self._check_usable()
        if staged is not None:
            staged()
        return info

    @property
    def uncut_bytes(self) -> int:
        """Bytes of the buffered batches no roll has cut yet (what a new roll would take)."""
        cut = sum(c.count for c in self._cuts)
        return sum(self._sizes[cut:])

    def _claim(self) -> tuple[_Cut | None, list[pa.RecordBatch]]:
        """The oldest cut no roll works on, else a new cut of everything after the cuts."""
        start = 0
        for cut in self._cuts:
            if not cut.busy:
                cut.busy = True
                return cut, self._batches[start : start + cut.count]
            start += cut.count
        if start == len(self._batches):
            return None, []
        cut = _Cut(len(self._batches) - start, self._value_schema)
        self._cuts.append(cut)
        return cut, self._batches[start:]

    async def _upload(self, batches: list[pa.RecordBatch], schema: ValueSchema | None) -> tuple[EncodedSegment, str]:
        decoded = self._decoded_for(batches, schema) if schema is not None else None
        if decoded is None and schema is not None and schema.format in REGISTRY_FORMATS:
            # Replayed from the WAL (no produce-time columns), or decoded before the columns
            # grew: never JSON-decode Avro values.
            decoded = await decode_stored(self._metadata, batches, schema)
        encoded = await run_blocking(self._encode, batches, schema, decoded)
        key = segment_key(self.topic.name, self.partition, encoded.base_offset, self.epoch)
        try:
            await self._store.put(key, encoded.data, if_absent=True)
        except ObjectExistsError:
            # A retry after a failed commit in the same epoch: the same offsets and epoch hold
            # the same records, so the object must be byte-identical to be reused.
            if await self._store.get(key) != encoded.data:
                raise StreamHouseError(f"segment object {key} exists with different content") from None
        return encoded, key

    async def _commit_cut(self, cut: _Cut, encoded: EncodedSegment, key: str) -> SegmentInfo:
        """Commit one uploaded cut (its turn: the commit lock is held) and trim the buffer."""
        self._check_usable()
        if not self._cuts or self._cuts[0] is not cut:
            raise EarlierRollFailedError(
                f"{self.topic.name}/{self.partition}: segment {key} waits for an earlier roll's retry"
            )
        info = encoded.info(topic=self.topic.name, partition=self.partition, object_key=key, epoch=self.epoch)
        try:
            await self._commit(info)
        except (FencedError, OffsetConflictError) as exc:
            await self.fence(str(exc))
            assert self._fenced is not None
            raise self._fenced from exc
        async with self._lock:
            self._cuts.pop(0)
            del self._batches[: cut.count]
            del self._sizes[: cut.count]
            for base in [b for b in self.derived if b < info.end_offset]:
                del self.derived[base]
            self._buffered_bytes = sum(self._sizes)
            self._oldest_ms = time.monotonic() * 1000 if self._batches else None
            self.durable_end = info.end_offset
            while self._unlogged and self._unlogged[0][0] + self._unlogged[0][1].num_rows <= info.end_offset:
                self._unlogged.pop(0)
            if self._producer_batches:
                self._durable_producers.update(self._committed_producers(info.end_offset))
                self._producer_batches = [b for b in self._producer_batches if b.end_offset > info.end_offset]
        return info

    def _decoded_for(self, batches: list[pa.RecordBatch], schema: ValueSchema) -> list[pa.Table] | None:
        """The declared columns already decoded for every one of `batches` (by the produce-time
        check, or by a query of the buffer) without a value that failed to decode; None if any
        batch lacks them. Read on the event loop: `derived` changes there."""
        want = schema.segment_schema()
        found: list[pa.Table] = []
        for batch in batches:
            decoded = self.derived.get(int(batch.column(0)[0].as_py())) if batch.num_rows else None
            if decoded is None or decoded.num_rows != batch.num_rows:
                return None
            if (decoded.schema.metadata or {}).get(b"bad_offsets"):
                return None  # the footer must record those values: the full decode does
            decoded = decoded.replace_schema_metadata(None)
            if not decoded.schema.equals(want):
                return None  # never let a cache mismatch make the segment unwritable
            found.append(decoded)
        return found

    def _encode(
        self,
        batches: list[pa.RecordBatch],
        schema: ValueSchema | None,
        decoded: list[pa.Table] | None = None,
    ) -> EncodedSegment:
        """Runs in the IO pool: declared value columns are decoded from JSON here, once, so
        scans of committed data never parse JSON (docs/DESIGN.md §7), unless produce already decoded
        them (`decoded`, one table per batch)."""
        table = pa.Table.from_batches(batches, schema=RECORD_SCHEMA)
        extra: dict[str, str] = {}
        if schema is not None and decoded is not None:
            columns = pa.concat_tables(decoded)
            for field, column in zip(schema.segment_schema(), columns.columns, strict=True):
                table = table.append_column(field, column)
        elif schema is not None:
            table, extra = with_declared_columns(table, schema)
        return encode_segment(
            table,
            topic=self.topic.name,
            partition=self.partition,
            epoch=self.epoch,
            row_group_bytes=self.config.row_group_bytes,
            extra_metadata=extra,
        )

    async def _commit(self, info: SegmentInfo) -> None:
        """Commit `info`; any failure, refusals included, is checked against the segments table
        first. A refusal (FencedError / OffsetConflictError) reaches the caller only when the
        row is not ours; an error whose outcome the read-back cannot settle is raised as it
        is, leaving the cut in place for a retry that will settle it."""
        try:
            producers = self._committed_producers(info.end_offset) if self._producer_batches else {}
            if producers:  # in the segment's own transaction: the rows and the log agree
                written = [b for b in self._producer_batches if info.base_offset <= b.base_offset < info.end_offset]
                await self._metadata.commit_segment(info, self.holder, self.epoch, list(producers.values()), written)
                # A read_committed view cached before the commit may lack a placement it made.
                shared_reads(self._metadata).changed([(self.topic.name, self.partition)])
            else:
                await self._metadata.commit_segment(info, self.holder, self.epoch)
        except Exception as exc:
            try:
                committed = await self._is_committed(info)
            except Exception:
                raise exc from None  # still unknown: the retry (same records, same key) decides
            if not committed:
                raise
            log.warning(
                "%s/%d: the commit of segment %s was applied although it reported %s; "
                "the reply was lost, the segment stands",
                self.topic.name,
                self.partition,
                info.object_key,
                exc,
            )

    async def _is_committed(self, info: SegmentInfo) -> bool:
        """Whether the segments table holds exactly this segment under this writer's epoch."""
        rows = await self._metadata.list_segments(
            self.topic.name, self.partition, info.base_offset, info.base_offset + 1
        )
        return any(
            r.base_offset == info.base_offset
            and r.end_offset == info.end_offset
            and r.epoch == self.epoch
            and r.object_key == info.object_key
            for r in rows
        )
