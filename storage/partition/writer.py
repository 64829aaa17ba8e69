"""One partition's write path: assign offsets → WAL → buffer, then roll the buffer into a
segment → upload (never overwrite) → fenced commit → release the WAL entries it covers.

The writer holds a lease epoch. A commit refused by the metadata store (another holder
took the partition) fences the writer for good: it drops its buffer and every later call
raises FencedError, so a stale leader can never acknowledge or commit again.

A commit whose outcome is unknown (the reply was lost, or a retry is refused) is resolved by
reading the segment row back: "refused because my own first attempt already committed it" is
success. The writer never deletes a segment object: one that metadata may reference must stay
readable, and an unreferenced object of a fenced epoch costs only storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from streamhouse.storage.errors import (
    BackpressureError,
    FencedError,
    InvalidInputError,
    ObjectExistsError,
    OffsetConflictError,
    StreamHouseError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.records.codec import decode_batch, frame_batch
from streamhouse.storage.records.schema import RECORD_SCHEMA, assign_offsets
from streamhouse.storage.segment.format import EncodedSegment, encode_segment
from streamhouse.storage.values.avro_evolve import extends
from streamhouse.storage.values.json_decode import with_declared_columns
from streamhouse.storage.values.registry_formats import decode_stored
from streamhouse.storage.values.schema import REGISTRY_FORMATS, ValueSchema, parse_value_schema
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog
from streamhouse.storage.wal.recovery import piece_payload, plan_recovery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterConfig:
    roll_bytes: int = 64 << 20  # docs/DESIGN.md §4: roll at 64 MiB …
    roll_age_ms: int = 10_000  # … or when the oldest buffered record is this old
    row_group_bytes: int = 1 << 20
    max_buffer_bytes: int = 512 << 20  # over this, produce gets BackpressureError


def segment_key(topic: str, partition: int, base_offset: int, epoch: int) -> str:
    return f"topics/{topic}/{partition:05d}/{base_offset:020d}-{epoch}.parquet"


def slice_batches(batches: Sequence[tuple[int, pa.RecordBatch]], start: int, end: int) -> list[pa.RecordBatch]:
    """The records of `batches` (each with its base offset) in [start, end), as zero-copy slices."""
    out: list[pa.RecordBatch] = []
    for base, batch in batches:
        lo = max(start, base) - base
        hi = min(end, base + batch.num_rows) - base
        if hi > lo:
            out.append(batch.slice(lo, hi - lo))
    return out


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
        # The columns a pending cut was encoded with: its retry must write the same bytes even
        # if the columns grew meanwhile (follow_value_schema).
        self._cut_schema: ValueSchema | None = None
        self._buffered_bytes = 0
        self._oldest_ms: float | None = None
        self.durable_end = durable_end  # committed in metadata
        self.next_offset = durable_end  # next offset to assign
        self._fenced: FencedError | None = None
        self.segments_committed = 0
        # Idempotent producers (docs/DESIGN.md §10), by producer id: `producers` is what this
        # leader has written (committed rows + WAL recovery + appends since), the committed
        # part is `_durable_producers`, and the written batches no segment holds yet wait in
        # `_producer_batches` for the commit that covers them.
        self.producers: dict[int, ps.ProducerState] = {}
        self._durable_producers: dict[int, ps.ProducerState] = {}
        self._producer_batches: list[ps.ProducerBatch] = []
        # Set by recover(): records re-buffered at their offsets, and acknowledged records of a
        # superseded leadership appended again at the end.
        self.replayed_records = 0
        self.recovered_records = 0
        # Called once when the writer is fenced with unflushed records (they stay in the WAL:
        # the owner schedules their recovery).
        self.on_fenced: Callable[[PartitionWriter], None] = lambda writer: None

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
        """A writer for a freshly acquired lease that takes over this partition's WAL entries
        (storage/wal/recovery.py): the latest leadership's records beyond the committed end are
        re-buffered at their offsets, acknowledged records whose offsets another leadership
        took are appended again at the end, and all of them are written to the WAL again
        under this epoch (so a later recovery sees them carried over)."""
        end = await metadata.get_end_offset(topic.name, partition)
        mine = [e for e in replayed if e.topic_id == topic.topic_id and e.partition == partition]
        low = min((e.base_offset for e in mine), default=end)
        segments = await metadata.list_segments(topic.name, partition, low, end) if low < end else []
        plan = plan_recovery(mine, end, segments)
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
        # The committed producer states first, then what the WAL re-appends (its entries carry
        # their batches' producer tags): the state travels with the partition.
        rows = await metadata.get_producer_states(topic.name, partition)
        committed = ps.newest({s.producer_id: s for s in rows}, ps.MAX_PRODUCERS)
        writer.producers = dict(committed)
        writer._durable_producers = committed
        for piece in plan.tail:
            payload = piece_payload(piece)
            batch = decode_batch(payload, source=f"WAL entry {topic.name}/{partition}@{piece.start}")
            await wal.append(topic.topic_id, partition, epoch, piece.start, piece.records, payload)
            producer = ps.tagged(batch, piece.start) if piece.whole else None
            writer._buffer(assign_offsets(ps.untagged(batch), piece.start))
            writer.next_offset = piece.end
            if producer is not None:
                writer._note(producer)
        for piece in plan.orphans:
            payload = piece_payload(piece)
            batch = decode_batch(payload, source=f"WAL entry {topic.name}/{partition}@{piece.start}")
            # A slice's tag would claim the whole batch's sequences at the slice's offsets.
            await writer.append(batch if piece.whole else ps.untagged(batch), payload)
        if not plan.idle:
            await wal.sync()  # the carried-over copies must outlive the originals' files
        await writer._decode_replayed()
        writer.recovered_records = plan.orphan_records
        writer.replayed_records = plan.tail_records
        if plan.orphans:
            log.warning(
                "%s/%d: %d acknowledged records of a leadership that was taken over were appended "
                "again at offsets %d..%d (epoch %d)",
                topic.name,
                partition,
                plan.orphan_records,
                writer.next_offset - plan.orphan_records,
                writer.next_offset - 1,
                epoch,
            )
        return writer

    # -- produce ------------------------------------------------------------------------------
    async def append(self, batch: pa.RecordBatch, payload: bytes | None = None, decoded: pa.Table | None = None) -> int:
        """Assign offsets, write the WAL entry, buffer; returns the base offset once the
        WAL holds the entry as its fsync policy promises.

        `payload`: the same records already framed by batch_codec (a produce request's bytes),
        written to the WAL as they are instead of re-encoding; their offset column is ignored,
        since replay assigns base + arange from the entry header. `decoded`: the batch's
        declared columns (segment names), already decoded by the produce-time check; kept as
        the batch's derived columns so the segment writer and queries do not decode again."""
        if not batch.schema.equals(RECORD_SCHEMA):
            raise InvalidInputError("batch does not have the record schema")
        n = batch.num_rows
        if n == 0:
            return self.next_offset
        async with self._lock:
            self._check_usable()
            # An idempotent producer's batch (tagged, docs/DESIGN.md §10) that this leader has
            # already written is not written again: the original's offsets answer it (a retry
            # that reached a new leader, or a copy handed over from another agent's WAL).
            producer = ps.tagged(batch, self.next_offset) if batch.schema.metadata else None
            if producer is not None:
                known = self.producers.get(producer.producer_id)
                first = producer.first_sequence
                done = known.find(producer.producer_epoch, first, producer.last_sequence) if known else None
                if done is not None:
                    return done.base_offset
            if self._buffered_bytes + batch.nbytes > self.config.max_buffer_bytes:
                raise BackpressureError(
                    f"{self.topic.name}/{self.partition}: {self._buffered_bytes} bytes buffered, "
                    f"limit {self.config.max_buffer_bytes}; segments are not being uploaded fast enough"
                )
            base = self.next_offset
            batch = assign_offsets(batch, base)
            # Shielded: once the WAL entry may be written, the offsets are spent. A cancelled
            # caller must not leave them unassigned, or the next append would reuse them.
            await asyncio.shield(self._write_and_buffer(batch, base, payload, producer))
            if decoded is not None and decoded.num_rows == n:
                self.derived[base] = decoded
        return base

    async def _write_and_buffer(
        self, batch: pa.RecordBatch, base: int, payload: bytes | None, producer: ps.ProducerBatch | None = None
    ) -> None:
        # The WAL entry keeps the producer tag (in the IPC schema); the buffer does not need it.
        # Encoded uncompressed (codec.frame_batch): on the event loop, LZ4 was the largest
        # single cost of a Kafka produce; the WAL is a short-lived local file.
        data = frame_batch(batch) if payload is None else payload
        # On failure the offsets stay free: the WAL truncates a failed write back, and a failed
        # fsync stops the WAL for good, so no later entry can reuse them on disk.
        await self._wal.append(self.topic.topic_id, self.partition, self.epoch, base, batch.num_rows, data)
        self._buffer(ps.untagged(batch) if producer is not None else batch)
        self.next_offset = base + batch.num_rows
        if producer is not None:
            self._note(producer)

    def _note(self, producer: ps.ProducerBatch) -> None:
        """A producer's batch is written (in the WAL): it answers retries from now on."""
        self.producers.update(ps.fold(self.producers, [producer]))
        self._producer_batches.append(producer)
        if len(self.producers) > ps.MAX_PRODUCERS:  # a tenth at a time: sorting is then rare
            self.producers = ps.newest(self.producers, ps.MAX_PRODUCERS * 9 // 10)
            self._durable_producers = ps.newest(self._durable_producers, ps.MAX_PRODUCERS * 9 // 10)

    def _committed_producers(self, end: int) -> dict[int, ps.ProducerState]:
        """The producer states as a segment ending at `end` leaves them (its batches folded in)."""
        return ps.fold(self._durable_producers, [b for b in self._producer_batches if b.end_offset <= end])

    def _buffer(self, batch: pa.RecordBatch) -> None:
        if not self._batches:
            self._oldest_ms = time.monotonic() * 1000
        self._batches.append(batch)
        self._buffered_bytes += batch.nbytes

    async def _decode_replayed(self) -> None:
        """An Avro topic's declared columns for the batches recovery buffered: produce left them
        decoded, the WAL did not. SQL over the unflushed tail (storage/partition/scan.py) then
        reads the same typed columns as before the restart instead of decoding the Avro values
        as JSON (which would read as nulls)."""
        if self._value_schema is None or self._value_schema.format not in REGISTRY_FORMATS:
            return
        pending = [b for b in self._batches if b.num_rows and int(b.column(0)[0].as_py()) not in self.derived]
        if not pending:
            return
        columns = await decode_stored(self._metadata, pending, self._value_schema)
        for batch, decoded in zip(pending, columns, strict=True):
            self.derived[int(batch.column(0)[0].as_py())] = decoded

    def follow_value_schema(self, topic: TopicInfo) -> None:
        """Schema evolution (issue 13): the topic's declared columns grew (the agent's produce
        passes the topic as it last read it). Only appended columns are followed: an older
        copy of the topic, or another topic of the same name, changes nothing. Buffered batches
        decoded with fewer columns are decoded again at the flush (`_decoded_for` → decode_stored)."""
        if topic.value_schema == self.topic.value_schema or topic.topic_id != self.topic.topic_id:
            return
        new = parse_value_schema(topic.value_schema)
        if new is None or self._value_schema is None or not extends(self._value_schema, new):
            return
        self._value_schema = new
        self.topic = replace(self.topic, value_schema=topic.value_schema)

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
        """Buffered records in [start, end), as zero-copy slices (readers go through
        storage/partition/view.py, which pins the buffer against a concurrent roll)."""
        return slice_batches(self.buffered_batches(start, end), start, end)

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
    async def flush(self, committed: Callable[[SegmentInfo], None] | None = None) -> SegmentInfo | None:
        """Roll everything buffered into segments and commit them (fenced); returns the last.

        `committed` is called with each segment as soon as its commit has moved `durable_end`, before the WAL
        entries it covers are released: a durable ack needs the commit, not the release (a
        WAL rotation: two fsyncs, ~4 ms a roll here), so it need not wait for it."""
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
                    self._cut_schema = None
                    del self._batches[: len(batches)]
                    for base in [b for b in self.derived if b < info.end_offset]:
                        del self.derived[base]
                    self._buffered_bytes = sum(b.nbytes for b in self._batches)
                    self._oldest_ms = time.monotonic() * 1000 if self._batches else None
                    self.durable_end = info.end_offset
                    if self._producer_batches:
                        self._durable_producers.update(self._committed_producers(info.end_offset))
                        self._producer_batches = [b for b in self._producer_batches if b.end_offset > info.end_offset]
                self.segments_committed += 1
                if committed is not None:
                    committed(info)
                await self._wal.release({(self.topic.topic_id, self.partition): info.end_offset})
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
        self, batches: list[pa.RecordBatch], schema: ValueSchema | None, decoded: list[pa.Table] | None = None
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

    async def _upload_and_commit(self, batches: list[pa.RecordBatch]) -> SegmentInfo:
        # One set of columns for the whole cut, even if follow_value_schema grows them meanwhile.
        schema = self._cut_schema = self._cut_schema or self._value_schema
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
        info = encoded.info(topic=self.topic.name, partition=self.partition, object_key=key, epoch=self.epoch)
        await self._commit(info)
        return info

    async def _commit(self, info: SegmentInfo) -> None:
        """Commit `info`; any failure, refusals included, is checked against the segments table
        first. A refusal (FencedError / OffsetConflictError) reaches the caller only when the
        row is not ours; an error whose outcome the read-back cannot settle is raised as it
        is, leaving the buffer and `_pending_cut` in place for a retry that will settle it."""
        try:
            producers = self._committed_producers(info.end_offset) if self._producer_batches else {}
            if producers:  # in the segment's own transaction: the rows and the log agree
                await self._metadata.commit_segment(info, self.holder, self.epoch, list(producers.values()))
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

    async def fence(self, reason: str) -> None:
        """Stop for good: drop the buffer (its records stay in the WAL, see on_fenced); every
        later call raises FencedError."""
        async with self._lock:
            if self._fenced is not None:
                return
            if self.next_offset > self.durable_end:
                self.on_fenced(self)
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
