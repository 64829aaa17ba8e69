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
from dataclasses import replace

import pyarrow as pa

from streamhouse.storage.errors import (
    BackpressureError,
    BatchAlreadyWrittenError,
    FencedError,
    InvalidInputError,
)
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.partition.roll import SegmentRoller, WriterConfig, _Cut
from streamhouse.storage.partition.unanswered import UnansweredBatches
from streamhouse.storage.records.codec import frame_batch
from streamhouse.storage.records.schema import RECORD_SCHEMA, assign_offsets
from streamhouse.storage.values.avro_evolve import extends
from streamhouse.storage.values.registry_formats import decode_stored
from streamhouse.storage.values.schema import REGISTRY_FORMATS, parse_value_schema
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog
from streamhouse.storage.wal.recovery import piece_batch, piece_payload, plan_recovery

log = logging.getLogger(__name__)

__all__ = ["PartitionWriter", "WriterConfig", "slice_batches"]


def slice_batches(batches: Sequence[tuple[int, pa.RecordBatch]], start: int, end: int) -> list[pa.RecordBatch]:
    """The records of `batches` (each with its base offset) in [start, end), as zero-copy slices."""
    out: list[pa.RecordBatch] = []
    for base, batch in batches:
        lo = max(start, base) - base
        hi = min(end, base + batch.num_rows) - base
        if hi > lo:
            out.append(batch.slice(lo, hi - lo))
    return out


class PartitionWriter(SegmentRoller):
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
        # storage/partition/roll.py: one roll cuts and uploads while at most one commits.
        self._roll_lock = asyncio.Lock()
        self._commit_lock = asyncio.Lock()
        self._batches: list[pa.RecordBatch] = []
        # Each buffered batch's nbytes, computed once: pyarrow walks the columns for it (~80 us
        # for 10 k records), and the durable rounds ask for the uncut bytes on every produce.
        self._sizes: list[int] = []
        # Buffered batches without a WAL entry (append's `logged=False`), with their base
        # offsets and framed payloads if any; dropped once a commit covers them.
        self._unlogged: list[tuple[int, pa.RecordBatch, bytes | None]] = []
        self._cuts: list[_Cut] = []  # leading batches taken by rolls not yet committed
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
        # Idempotent producers (docs/DESIGN.md §10), by producer id: `producers` is what this
        # leader has written (committed rows + WAL recovery + appends since), the committed
        # part is `_durable_producers`, and the written batches no segment holds yet wait in
        # `_producer_batches` for the commit that covers them.
        self.producers: dict[int, ps.ProducerState] = {}
        self._durable_producers: dict[int, ps.ProducerState] = {}
        self._producer_batches: list[ps.ProducerBatch] = []
        # Committed idempotent batches never answered (storage/partition/unanswered.py).
        self.unanswered = UnansweredBatches(metadata, topic.name, partition, holder, epoch)
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
        await writer.unanswered.load({s.producer_id for s in rows}, end)
        writer._durable_producers = committed
        for piece in plan.tail:
            payload = piece_payload(piece)
            batch = piece_batch(payload, piece, f"WAL entry {topic.name}/{partition}@{piece.start}")
            await wal.append(topic.topic_id, partition, epoch, piece.start, piece.records, payload)
            producer = ps.tagged(batch, piece.start) if piece.whole else None
            writer._buffer(assign_offsets(ps.untagged(batch), piece.start))
            writer.next_offset = piece.end
            if producer is not None:
                writer._note(producer)
        # A Kafka transaction's batch that is in the log elsewhere or was aborted never comes back.
        settled = await metadata.txn_settled(topic.name, partition) if plan.orphans else set()
        dropped = 0
        for piece in plan.orphans:
            payload = piece_payload(piece)
            batch = piece_batch(payload, piece, f"WAL entry {topic.name}/{partition}@{piece.start}")
            if piece.whole and ps.among(batch, piece.start, settled):
                dropped += piece.records
                continue
            # A slice's tag would claim the whole batch's sequences at the slice's offsets.
            try:
                await writer.append(batch if piece.whole else ps.untagged(batch), payload)
            except BatchAlreadyWrittenError:
                dropped += piece.records  # its producer's retry put it in the log already
        if not plan.idle:
            await wal.sync()  # the carried-over copies must outlive the originals' files
        await writer._decode_replayed()
        writer.recovered_records = plan.orphan_records - dropped
        if dropped:
            log.warning("%s/%d: %d WAL records of Kafka transactions aborted or already in the log not appended "
                        "again", topic.name, partition, dropped)  # fmt: skip
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
    async def append(
        self,
        batch: pa.RecordBatch,
        payload: bytes | None = None,
        decoded: pa.Table | None = None,
        *,
        logged: bool = True,
    ) -> int:
        """Assign offsets, write the WAL entry, buffer; returns the base offset once the
        WAL holds the entry as its fsync policy promises.

        `logged=False` (acks=durable: nobody is answered before the segment commit) buffers
        without a WAL entry: a crash loses only unacknowledged records, which their producer
        sends again. Such batches are written to the WAL after all, in order, as soon as a
        logged batch follows them, so the WAL always holds every record from the durable end
        up to its last entry and recovery never meets a hole.

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
                if known is not None and known.passed(producer.producer_epoch, producer.last_sequence):
                    # Older than the kept batches: written before (the client's retry reached
                    # this leader, and a dead leader's WAL copy comes later) and not again.
                    # Kafka's own produce path refuses it first (idempotence.py check_sequence).
                    raise BatchAlreadyWrittenError(
                        f"{self.topic.name}/{self.partition}: batch of producer {producer.producer_id} epoch "
                        f"{producer.producer_epoch} sequences {first}..{producer.last_sequence} was written before"
                    )
            size = batch.nbytes
            if self._buffered_bytes + size > self.config.max_buffer_bytes:
                raise BackpressureError(
                    f"{self.topic.name}/{self.partition}: {self._buffered_bytes} bytes buffered, "
                    f"limit {self.config.max_buffer_bytes}; segments are not being uploaded fast enough"
                )
            base = self.next_offset
            batch = assign_offsets(batch, base)
            # Shielded: once the WAL entry may be written, the offsets are spent. A cancelled
            # caller must not leave them unassigned, or the next append would reuse them.
            await asyncio.shield(self._write_and_buffer(batch, base, payload, producer, logged, size))
            if decoded is not None and decoded.num_rows == n:
                self.derived[base] = decoded
        return base

    async def _write_and_buffer(
        self,
        batch: pa.RecordBatch,
        base: int,
        payload: bytes | None,
        producer: ps.ProducerBatch | None = None,
        logged: bool = True,
        size: int | None = None,
    ) -> None:
        if logged:
            await self._log_unlogged()
            # On failure the offsets stay free: the WAL truncates a failed write back, and a
            # failed fsync stops the WAL for good, so no later entry can reuse them on disk.
            await self._log(base, batch, payload)
        else:
            self._unlogged.append((base, batch, payload))
        self._buffer(ps.untagged(batch) if producer is not None else batch, size)
        self.next_offset = base + batch.num_rows
        if producer is not None:
            self._note(producer)

    async def _log(self, base: int, batch: pa.RecordBatch, payload: bytes | None) -> None:
        # The WAL entry keeps the producer tag (in the IPC schema); the buffer does not need it.
        # Encoded uncompressed (codec.frame_batch): on the event loop, LZ4 was the largest
        # single cost of a Kafka produce; the WAL is a short-lived local file.
        data = frame_batch(batch) if payload is None else payload
        await self._wal.append(self.topic.topic_id, self.partition, self.epoch, base, batch.num_rows, data)

    async def _log_unlogged(self) -> None:
        """WAL entries for the buffered acks=durable batches no commit covers yet, oldest
        first: a logged batch is about to follow them (see append)."""
        while self._unlogged:
            base, batch, payload = self._unlogged[0]
            if base + batch.num_rows > self.durable_end:
                await self._log(base, batch, payload)
            self._unlogged.pop(0)

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

    def _buffer(self, batch: pa.RecordBatch, size: int | None = None) -> None:
        if not self._batches:
            self._oldest_ms = time.monotonic() * 1000
        size = batch.nbytes if size is None else size
        self._batches.append(batch)
        self._sizes.append(size)
        self._buffered_bytes += size

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

    def buffered_producers(self, start: int) -> tuple[ps.ProducerBatch, ...]:
        """The producer batches (idempotent, transactional) buffered from `start` on, with their
        offsets: a read_committed view of the tail finds an aborted batch not yet placed by them."""
        return tuple(b for b in self._producer_batches if b.end_offset > start)

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
            self._sizes.clear()
            self._cuts.clear()
            self._unlogged.clear()  # never acknowledged: their producers send them again
            self.derived.clear()
            self._buffered_bytes = 0

    @property
    def fenced(self) -> bool:
        return self._fenced is not None

    async def close(self, *, flush: bool = True) -> None:
        """Graceful shutdown: flush what is buffered (unless fenced)."""
        if flush and not self.fenced:
            await self.flush()
