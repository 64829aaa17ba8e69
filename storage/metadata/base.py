"""The MetadataStore contract: domain operations only, no SQL outside the implementations.

Every backend passes tests/storage/test_metadata_contract.py, tests/storage/test_fencing.py and
tests/storage/test_metadata_jobs.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from streamhouse.storage.metadata.log_start import PartitionLog, PartitionStats
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.metadata.service_metadata import ServiceMetadata
from streamhouse.storage.metadata.snapshot import MetadataDump, Table
from streamhouse.storage.metadata.swap import DeferredDeletion
from streamhouse.storage.metadata.transactions import TxnBatch, TxnState
from streamhouse.storage.model import Checkpoint, JobInfo, Lease, SegmentInfo, TopicInfo


@runtime_checkable
class MetadataStore(ServiceMetadata, Protocol):
    """Topics, segments, leases, jobs, groups and transactions here; the registry's, auth's
    and quotas' operations in ServiceMetadata (service_metadata.py)."""

    @property
    def url(self) -> str: ...

    async def close(self) -> None: ...

    async def now_ms(self) -> int:
        """The database clock in epoch milliseconds: the only clock leases are judged by."""
        ...

    # -- topics -----------------------------------------------------------------------------
    async def create_topic(
        self,
        name: str,
        partitions: int,
        config: Mapping[str, str] | None = None,
        value_schema: str | None = None,
    ) -> TopicInfo:
        """TopicExistsError if taken. Creates the partition rows (end offset 0)."""
        ...

    async def get_topic(self, name: str) -> TopicInfo:
        """TopicNotFoundError if missing."""
        ...

    async def list_topics(self) -> list[TopicInfo]: ...

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Sequence[str] = (),
        add_partitions: int = 0,
    ) -> TopicInfo:
        """One transaction: the keys of `set_config` are set, the keys in `reset` removed (absent
        ones are ignored) and `add_partitions` new partitions created (end offset 0) after the
        existing ones; returns the topic as it now is. Keys and values are opaque here (the
        setting registry, storage/topic_config.py, judges them). TopicNotFoundError if missing;
        InvalidInputError (PartitionCountError past the partition limit) changes nothing."""
        ...

    async def swap_value_schema(self, name: str, expected: str | None, value_schema: str) -> TopicInfo:
        """Compare-and-set of the topic's value_schema (schema evolution, issue 13): replaced by
        `value_schema` only if it still is `expected`; returns the topic as it now is either way,
        so two agents evolving at once both see the one winner's columns. The caller judges the
        new text (only additions of columns). TopicNotFoundError if missing."""
        ...

    async def delete_topic(self, name: str) -> list[SegmentInfo]:
        """Removes the topic, its partitions, segments and offsets (consumer groups' and jobs'
        source offsets) and revokes its leases (rows kept so epochs never restart); returns the
        segments so the caller can delete their objects. TopicNotFoundError if missing."""
        ...

    # -- partitions and segments --------------------------------------------------------------
    async def get_end_offset(self, topic: str, partition: int) -> int:
        """Durable end offset: one past the last committed record."""
        ...

    async def commit_segment(
        self,
        segment: SegmentInfo,
        holder: str,
        epoch: int,
        producers: Sequence[ProducerState] = (),
        written: Sequence[ProducerBatch] = (),
    ) -> None:
        """Fenced commit, one transaction: the partition lease must be held by `holder` at
        `epoch` (else FencedError) and `segment.base_offset` must equal the durable end
        offset (else OffsetConflictError); then insert the segment and advance the end.
        `producers`: the idempotent producers' states as of the segment's end (docs/DESIGN.md
        §10), upserted in the same transaction; rows of producers silent for EXPIRY_MS go.
        `written`: the producer batches the segment holds; those of Kafka transactions are
        placed at their offsets in the same transaction (transactions.PLACE_BATCH), so a batch
        never becomes readable outside its transaction's view, whatever path appended it."""
        ...

    async def get_producer_states(self, topic: str, partition: int) -> list[ProducerState]:
        """The producer states committed with the partition's segments (by producer id).
        PartitionNotFoundError / TopicNotFoundError."""
        ...

    async def allocate_producer_id(self) -> int:
        """A producer id never handed out before by any agent sharing this store (>= 1)."""
        ...

    async def list_segments(
        self, topic: str, partition: int, start_offset: int = 0, end_offset: int | None = None
    ) -> list[SegmentInfo]:
        """Segments overlapping [start_offset, end_offset), ordered by base offset."""
        ...

    # -- segment swaps and deferred deletion (storage/metadata/swap.py) -----------------------
    async def replace_segments(
        self, old: Sequence[SegmentInfo], new: SegmentInfo, resource: str, holder: str, epoch: int, grace_ms: int
    ) -> None:
        """One transaction: `new` (same records, offsets [old[0].base, old[-1].end), the old
        segments' epoch) replaces the neighbouring run `old`, whose objects are recorded for
        deletion `grace_ms` from now (database clock). FencedError unless lease `resource` is
        held by `holder` at `epoch`; SegmentsChangedError unless the rows overlapping the range
        are exactly `old`; Topic/PartitionNotFoundError. Any refusal changes nothing; the end
        offset and producer states are untouched."""
        ...

    async def due_deletions(self, limit: int = 1000) -> list[DeferredDeletion]:
        """Recorded objects whose grace has passed (database clock), oldest first."""
        ...

    async def list_deletions(self) -> list[DeferredDeletion]:
        """Every recorded object still to delete, due first."""
        ...

    async def deferred_among(self, keys: Sequence[str]) -> set[str]:
        """Which of `keys` are recorded for deferred deletion (the orphan reconciler's check,
        one bounded query per batch instead of reading the whole table)."""
        ...

    async def forget_deletions(self, keys: Sequence[str]) -> None:
        """Drop these records (their objects are deleted); unknown keys are ignored."""
        ...

    # -- log start, retention, per-partition figures (storage/metadata/log_start.py) ----------
    async def list_log(self, topic: str, partition: int) -> PartitionLog:
        """Every committed segment of the partition (by base offset) and its log start, the
        segments read first (see log_start.py). Topic/PartitionNotFoundError."""
        ...

    async def truncate_log(
        self, old: Sequence[SegmentInfo], resource: str, holder: str, epoch: int, grace_ms: int
    ) -> int:
        """Retention, one transaction: remove the partition's oldest segments `old` (every row
        below old[-1].end_offset, exactly as read), record their objects for deletion `grace_ms`
        from now (database clock) and move the log start to old[-1].end_offset (never back);
        returns the log start now. FencedError unless lease `resource` is held by `holder` at
        `epoch`; SegmentsChangedError unless the rows below are exactly `old`; InvalidInputError
        if no segment would remain at or after the new log start (the newest is always kept);
        Topic/PartitionNotFoundError. Any refusal changes nothing."""
        ...

    async def partition_stats(self, topic: str) -> list[PartitionStats]:
        """Per partition, by number: log start, durable end, segment count and bytes, last
        compaction (one consistent read). TopicNotFoundError."""
        ...

    async def set_last_compacted(self, topic: str, partition: int, at_ms: int | None = None) -> int:
        """Record that compaction finished a pass over the partition at `at_ms` (None: the
        database clock now); returns the stored time. Topic/PartitionNotFoundError."""
        ...

    # -- leases -----------------------------------------------------------------------------
    async def acquire_lease(self, resource: str, holder: str, ttl_ms: int) -> Lease:
        """Take a free or expired lease (epoch + 1) or return it unchanged (expiry extended)
        if `holder` already has it. LeaseHeldError if another live holder has it."""
        ...

    async def renew_lease(self, resource: str, holder: str, epoch: int, ttl_ms: int) -> Lease:
        """Extend expiry; the epoch never changes. FencedError if no longer holder at epoch."""
        ...

    async def release_lease(self, resource: str, holder: str, epoch: int) -> None:
        """Give the lease up (expire it now) if still held at epoch; otherwise a no-op."""
        ...

    async def get_lease(self, resource: str) -> Lease | None: ...

    # -- continuous-query jobs (docs/DESIGN.md §8) ----------------------------------------------------------
    # A job runs wherever its lease `job_resource(name)` is held (acquire/renew/release_lease).
    async def create_job(
        self, name: str, sql: str, output_topic: str, options: Mapping[str, str] | None = None
    ) -> JobInfo:
        """Names follow the topic rules; JobExistsError if taken. The output topic need not
        exist yet: it is checked when a checkpoint writes into it."""
        ...

    async def get_job(self, name: str) -> JobInfo:
        """JobNotFoundError if missing."""
        ...

    async def list_jobs(self) -> list[JobInfo]:
        """Every job, ordered by name."""
        ...

    async def delete_job(self, name: str) -> list[str]:
        """Removes the job, its checkpoints and source offsets and revokes its lease (the row is
        kept, so a runner still holding it is fenced and a re-created job gets a higher epoch).
        Returns the state keys of the removed checkpoints, oldest first, so the caller can delete
        those objects. The job's output topic is left alone. JobNotFoundError if missing."""
        ...

    async def commit_checkpoint(self, checkpoint: Checkpoint, holder: str, epoch: int) -> None:
        """The exactly-once step, one transaction; on any error nothing changes.

        Checks: the job exists (JobNotFoundError); its lease is held by `holder` at `epoch`
        (FencedError); `checkpoint.seq` is the last committed seq + 1, the first being 1
        (OffsetConflictError); every topic/partition named exists (Topic/PartitionNotFoundError);
        for each output partition, its first segment starts at the durable end offset
        (OffsetConflictError). Output segments carry the job's epoch and, per partition, must be
        contiguous and ascending in the tuple (else InvalidInputError); they are fenced by the
        job's lease, not by partition leases. Then: the segments are inserted and end offsets
        advanced as commit_segment does, the source offsets upserted (partitions not named keep
        theirs; moving one back is allowed) and the checkpoint recorded (state pointer, stats,
        the database clock). Only the latest 100 checkpoints of a job are kept."""
        ...

    async def latest_checkpoint(self, job: str) -> Checkpoint | None:
        """The job's last committed checkpoint, None before the first; JobNotFoundError if the
        job is missing. `source_offsets` are the job's current offsets (every partition any
        checkpoint named, at its latest value): where to resume. `output_segments` is always
        empty: segments are not recorded per checkpoint (list_segments has them)."""
        ...

    # -- consumer groups ----------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Store the next offset to read per partition (Kafka semantics)."""
        ...

    async def fetch_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        """(topic, partition) → committed offset for a group."""
        ...

    async def list_groups(self) -> list[str]: ...

    async def delete_group(self, group: str, topic: str | None = None) -> None: ...

    # -- Kafka transactions (issue 18; storage/metadata/transactions.py) -----------------------
    async def txn_get(self, transactional_id: str) -> TxnState | None:
        """The transactional id's stored state, None if it was never stored."""
        ...

    async def txn_ongoing(self) -> list[TxnState]:
        """Every transaction in state Ongoing (the timeout scan)."""
        ...

    async def txn_put(self, state: TxnState) -> TxnState:
        """Store `state` if the stored version is still `state.version` (0: no row), else
        TransactionError "concurrent"; returns it with its version moved by one."""
        ...

    async def txn_end(self, state: TxnState, commit: bool, new_epoch: int) -> TxnState:
        """End the open transaction `state` (compare-and-set as txn_put), in one database
        transaction: its batches' rows go (commit) or become aborted, its pending offsets move
        into consumer_offsets (commit) or go, and the row becomes CompleteCommit/CompleteAbort at
        `new_epoch`."""
        ...

    async def txn_open_batch(
        self, transactional_id: str, producer_id: int, epoch: int, topic: str, partition: int, first_sequence: int,
        lower: int,
    ) -> None:  # fmt: skip
        """Register a transactional batch before it is appended (`lower`: an offset at or below
        its first), if the partition is in the producer's open transaction at its current epoch
        (else TransactionError). A retry of a registered batch changes nothing."""
        ...

    async def txn_place_batch(
        self, topic: str, partition: int, producer_id: int, epoch: int, first_sequence: int, base: int, end: int
    ) -> None:
        """The offsets [base, end) a registered batch was written at."""
        ...

    async def txn_void_batches(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        """Idempotent batches written but never acknowledged, whose producer has started a new
        epoch (engine/kafka/unacked.py): kept as aborted rows, which read_committed readers skip.
        All of them or none."""
        ...

    async def kafka_unanswered(self, topic: str, partition: int) -> list[ProducerBatch]:
        """The partition's idempotent batches committed and left unanswered by a leader
        (engine/kafka/unacked.py), by producer id and offset."""
        ...

    async def kafka_keep_unanswered(
        self, topic: str, partition: int, holder: str, epoch: int, batches: Sequence[ProducerBatch]
    ) -> None:
        """Keep `batches` (committed, their answer not made) as unanswered, if `holder` still
        leads the partition at lease `epoch` (FencedError otherwise: nothing is kept). A batch
        kept already stays as it is."""
        ...

    async def kafka_drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        """Forget `batches` as unanswered (answered after all, or voided); unknown ones are ignored."""
        ...

    async def txn_settled(self, topic: str, partition: int) -> set[tuple[int, int, int]]:
        """(producer id, epoch, first sequence) of the partition's transactional batches that are
        placed (a copy is in the log) or aborted: a WAL take-over must not append those again."""
        ...

    async def txn_batches(self, topic: str, partition: int, from_offset: int = 0) -> list[TxnBatch]:
        """The partition's open batches, its aborted ones not yet placed, and its placed aborted
        ones ending after `from_offset`, by base."""
        ...

    async def txn_commit_offsets(
        self, transactional_id: str, producer_id: int, epoch: int, group: str, topic: str, offsets: Mapping[int, int]
    ) -> None:
        """TxnOffsetCommit: keep `offsets` for the open transaction (the group must be in it),
        committed to the group when the transaction commits."""
        ...

    # -- snapshots and disaster recovery (issue 14; storage/metadata/snapshot.py) ------------------
    async def export_tables(self) -> MetadataDump:
        """Every table but schema_migrations, SELECT * with its column names, in one consistent
        read; `taken_ms` is the database clock read just before it (every commit acknowledged
        before that instant is in the dump)."""
        ...

    async def import_tables(self, tables: Sequence[Table]) -> None:
        """Write `tables` into an EMPTY database, one transaction, parents before children (by
        the foreign keys in the catalog); `counters` rows raise the seeded counters (never lower
        them). MetadataNotEmptyError (naming the tables with rows) if any table but counters
        holds a row; SnapshotSchemaError if a table or column is unknown here; nothing is
        written on any error. Columns a Table leaves out take their defaults."""
        ...
