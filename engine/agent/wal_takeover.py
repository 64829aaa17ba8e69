"""The WAL records an agent still has to take over (issue 20): acknowledged records of this
agent's WAL that are in no committed segment. A restart finds them in the replayed WAL; a live
agent whose writer was fenced with unflushed records finds them by re-reading its WAL.

They reach the log one of two ways, both at-least-once and counted:
- this agent leads the partition (at once, or as soon as its lease is free): its new writer
  re-buffers them or appends them again (PartitionWriter.recover, storage/wal/recovery.py);
- another live agent leads it: they are produced to that leader with acks=durable
  (engine/agent/forward.py), consecutive plain batches as one produce, each batch followed by
  a FORWARDED_EPOCH marker in this WAL.
Until then their WAL files are kept. Only records of deleted topics or partitions are dropped.

An idempotent Kafka producer's batches carry their producer tag in the entry's payload
(storage/metadata/producer_state.py, docs/DESIGN.md §10), so either way the tag goes with the
records: a writer that re-appends or receives a batch it already holds (the client retried it
at the new leader meanwhile) answers with the original's offsets instead of storing it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from streamhouse.agent.forward import Forwarder, cannot_forward
from streamhouse.storage.errors import BatchAlreadyWrittenError, NotLeaderError, StreamHouseError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata import producer_state as ps
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.partition.writer import PartitionWriter
from streamhouse.storage.records.control import control_mask
from streamhouse.storage.wal.format import FORWARDED_EPOCH, WalEntry
from streamhouse.storage.wal.log import WriteAheadLog
from streamhouse.storage.wal.recovery import Piece, RecoveryPlan, piece_batch, piece_payload, plan_recovery

log = logging.getLogger(__name__)

WalKey = tuple[int, int]  # (topic id, partition)
RecoveryHook = Callable[[str, int, int], None]  # (topic, recovered records, dropped records)
# One forward (a produce to the leader, acks=durable) holds at most this much of a held tail.
RUN_BYTES = 4 << 20
RUN_RECORDS = 50_000


class WalTakeover:
    def __init__(self, metadata: MetadataStore, wal: WriteAheadLog, replayed: Iterable[WalEntry]) -> None:
        self.metadata = metadata
        self.wal = wal
        # Replayed entries by partition; dropped partition by partition once taken over.
        self._pending: dict[WalKey, list[WalEntry]] = {}
        for e in replayed:
            self._pending.setdefault((e.topic_id, e.partition), []).append(e)
        # Partitions whose writer was fenced with unflushed records: re-read from the WAL.
        self._rescan: set[WalKey] = set()
        self._waiting_logged: set[WalKey] = set()
        self.recovered_records: dict[str, int] = {}
        self.dropped_records: dict[str, int] = {}
        self._on_recovery: RecoveryHook = lambda topic, recovered, dropped: None
        # How held records reach a partition another live agent leads: set by the node that
        # composes the agent (engine/node/), which knows the network client.
        self.forward: Forwarder = cannot_forward

    @property
    def waiting(self) -> set[WalKey]:
        return set(self._pending) | self._rescan

    async def release_settled(self, keys: Iterable[WalKey]) -> None:
        """At start: release the WAL entries of partitions that need nothing more (all in
        segments of their own leadership, or their topic is gone: counted as dropped)."""
        by_id = {t.topic_id: t for t in await self.metadata.list_topics()}
        covered: dict[WalKey, int] = {}
        for key in keys:
            topic_id, partition = key
            topic = by_id.get(topic_id)
            entries = self._pending.get(key, [])
            if topic is None or partition >= topic.partitions:
                covered[key] = 2**62  # nothing will ever read them
                lost = sum(e.record_count for e in entries)
                if lost:  # their records went with the topic; counted so it is never silent
                    name = topic.name if topic else f"<deleted topic {topic_id}>"
                    log.warning(
                        "dropping %d WAL records of %s/%d: the partition no longer exists", lost, name, partition
                    )
                    self._count(name, 0, lost)
                self._pending.pop(key, None)
                continue
            end, plan = await self._plan(topic, partition, entries)
            if plan.idle:
                covered[key] = end
                self._pending.pop(key, None)
        if covered:
            await self.wal.release(covered)

    async def entries_for(self, key: WalKey) -> list[WalEntry]:
        """What a new writer of `key` takes over (PartitionWriter.recover's `replayed`)."""
        if key in self._rescan:
            return await self.wal.entries_of(*key)
        return self._pending.get(key, [])

    def taken_over(self, topic: str, key: WalKey, writer: PartitionWriter) -> None:
        """A new writer of `key` recovered its entries (call right after PartitionWriter.recover)."""
        self._pending.pop(key, None)
        self._rescan.discard(key)
        self._waiting_logged.discard(key)
        writer.on_fenced = self._fenced_with_records
        if writer.recovered_records:
            self._count(topic, writer.recovered_records, 0)

    async def round(
        self,
        lead: Callable[[TopicInfo, int], Awaitable[PartitionWriter]],
        leading: Callable[[str, int], PartitionWriter | None],
    ) -> None:
        """One pass over the waiting partitions: lead each if its lease is free (`lead`, which
        calls back taken_over), else hand the records to the live leader it names."""
        keys = self.waiting
        if not keys:
            return
        by_id = {t.topic_id: t for t in await self.metadata.list_topics()}
        for key in sorted(keys):
            topic = by_id.get(key[0])
            if topic is None or key[1] >= topic.partitions or leading(topic.name, key[1]) is not None:
                continue
            try:
                await lead(topic, key[1])
            except NotLeaderError as exc:
                reason: Exception = exc
                if exc.leader:
                    try:
                        await self._forward(topic, key, exc.leader)
                        continue
                    except Exception as fwd:  # the leader died or refused: the next round retries
                        reason = fwd
                if key not in self._waiting_logged:
                    self._waiting_logged.add(key)
                    log.warning(
                        "%s/%d: WAL records of this agent wait for the partition's leader (%s); retrying",
                        topic.name,
                        key[1],
                        reason,
                    )
            except StreamHouseError as exc:
                log.warning("recovering %s/%d from the WAL failed (retrying): %s", topic.name, key[1], exc)

    async def _forward(self, topic: TopicInfo, key: WalKey, leader: str) -> None:
        """Produce the held records of `key` to the live leader at `leader` (acks=durable), each
        WAL batch followed by a FORWARDED_EPOCH marker in this WAL so no later recovery repeats
        it. Consecutive plain batches go as one produce (`_runs`): one segment commit for a
        tail of many small batches, not one each, which is how long the tail waits on this
        disk alone. A crash between a forward and its markers repeats that run once
        (at-least-once)."""
        _, plan = await self._plan(topic, key[1], await self.wal.entries_of(*key))
        # Another agent leads: records beyond the committed end are not this agent's to place at
        # their offsets any more, so the tail goes the same way as the orphans.
        pieces = sorted([*plan.orphans, *plan.tail], key=lambda p: (p.entry.epoch, p.start))
        forwarded = 0
        # A Kafka transaction's batch that is in the log elsewhere or was aborted never comes back.
        settled = await self.metadata.txn_settled(topic.name, key[1]) if pieces else set()
        for run in _runs(topic.name, key[1], pieces):
            forwarded += await self._forward_run(topic.name, key, leader, run, settled)
        self._pending.pop(key, None)
        self._rescan.discard(key)
        self._waiting_logged.discard(key)
        if forwarded:
            log.warning(
                "%s/%d: %d acknowledged records of a leadership that was taken over were produced again "
                "to the leader at %s",
                topic.name,
                key[1],
                forwarded,
                leader,
            )
            self._count(topic.name, forwarded, 0)
        # Everything of this partition up to its committed end is now in segments (ours, the
        # other leader's, or forwarded), so those WAL entries may go; this agent can only lead
        # it again from that end or later, so no future entry of its own is covered by this.
        await self.wal.release({key: await self.metadata.get_end_offset(topic.name, key[1])})

    async def _forward_run(
        self, topic: str, key: WalKey, leader: str, run: list[Held], settled: set[tuple[int, int, int]]
    ) -> int:
        """One produce for `run`, then a marker per piece at the offsets the leader gave it;
        the records produced (0 when the leader already holds them)."""
        first = run[0]
        if len(run) == 1:
            if first.piece.whole and ps.among(first.batch, first.piece.start, settled):
                log.warning("%s/%d: %d WAL records of a Kafka transaction aborted or already in the log not "
                            "produced again", topic, key[1], first.piece.records)  # fmt: skip
                return 0
            batch = first.batch
        else:
            (batch,) = pa.Table.from_batches([h.batch for h in run]).combine_chunks().to_batches()
        try:
            base = await self.forward(leader, topic, key[1], batch)
            sent = batch.num_rows
        except BatchAlreadyWrittenError:  # only a tagged batch, always alone in its run
            # The producer's retry reached that leader first; the marker still records that
            # this copy is dealt with (its base offset is never read).
            log.warning("%s/%d: %d WAL records the partition already holds (its producer retried them "
                        "there) not produced again", topic, key[1], first.piece.records)  # fmt: skip
            base, sent = first.piece.start, 0
        for held in run:
            await self.wal.append(key[0], key[1], FORWARDED_EPOCH, base, held.piece.records, held.payload)
            base += held.piece.records
        await self.wal.sync()
        return sent

    async def _plan(self, topic: TopicInfo, partition: int, entries: list[WalEntry]) -> tuple[int, RecoveryPlan]:
        end = await self.metadata.get_end_offset(topic.name, partition)
        low = min((e.base_offset for e in entries), default=end)
        segments = await self.metadata.list_segments(topic.name, partition, low, end) if low < end else []
        return end, plan_recovery(entries, end, segments)

    def watch(self, callback: RecoveryHook) -> None:
        """`callback(topic, recovered, dropped)` for every recovery from now on, after one call
        per topic for what was recovered or dropped before (at start)."""
        for topic in sorted(set(self.recovered_records) | set(self.dropped_records)):
            callback(topic, self.recovered_records.get(topic, 0), self.dropped_records.get(topic, 0))
        self._on_recovery = callback

    def _count(self, topic: str, recovered: int, dropped: int) -> None:
        self.recovered_records[topic] = self.recovered_records.get(topic, 0) + recovered
        self.dropped_records[topic] = self.dropped_records.get(topic, 0) + dropped
        self._on_recovery(topic, recovered, dropped)

    def _fenced_with_records(self, writer: PartitionWriter) -> None:
        key = (writer.topic.topic_id, writer.partition)
        self._rescan.add(key)
        self._waiting_logged.discard(key)


@dataclass(frozen=True)
class Held:
    """One piece of a held WAL entry, its payload (the marker's) and its records."""

    piece: Piece
    payload: bytes
    batch: pa.RecordBatch


def _runs(topic: str, partition: int, pieces: list[Piece]) -> Iterator[list[Held]]:
    """`pieces` in order, grouped into runs to forward as one produce: consecutive plain
    batches (no producer tag, no transaction marker, the same schema) up to RUN_BYTES /
    RUN_RECORDS. A tagged batch (an idempotent or transactional producer's: the leader checks
    its sequences as a whole) and a marker batch (produce takes one only whole) go alone."""
    run: list[Held] = []
    size = records = 0
    for piece in pieces:
        payload = piece_payload(piece)
        batch = piece_batch(payload, piece, f"WAL entry {topic}/{partition}@{piece.start}")
        held = Held(piece, payload, batch)
        plain = not batch.schema.metadata and control_mask(batch.column("headers")) is None
        if run and (
            not plain
            or not batch.schema.equals(run[0].batch.schema)
            or size + len(payload) > RUN_BYTES
            or records + piece.records > RUN_RECORDS
        ):
            yield run
            run, size, records = [], 0, 0
        if not plain:
            yield [held]
            continue
        run.append(held)
        size += len(payload)
        records += piece.records
    if run:
        yield run
