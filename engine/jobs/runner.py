"""One running job: read its source topics from the checkpointed offsets in micro-batches, feed
the window operator (or, for a window join of two topics, the join operator), and checkpoint
(docs/DESIGN.md §8): output and dead-letter segments uploaded, the operator's state snapshot
uploaded, then ONE metadata transaction commits the segments, the source offsets (of every
source) and the state pointer under the job's lease. A restart resumes from there;
anything uploaded but not committed is never referenced."""

from __future__ import annotations

import asyncio
import logging
import time

import pyarrow as pa

from streamhouse.jobs.host import JobHost
from streamhouse.jobs.output import encode_output
from streamhouse.jobs.rights import CreatorRights
from streamhouse.jobs.source import may_have_unread, read_partition
from streamhouse.sql.query.catalog import topic_schema
from streamhouse.sql.statements.job_options import parse_job_options
from streamhouse.sql.streaming.continuous import ContinuousPlan, plan_continuous
from streamhouse.sql.streaming.interval_join import IntervalJoinOperator
from streamhouse.sql.streaming.interval_plan import IntervalPlan
from streamhouse.sql.streaming.join import JoinOperator
from streamhouse.sql.streaming.join_plan import JoinPlan
from streamhouse.sql.streaming.life_agg import LifeAggOperator, LifeAggPlan
from streamhouse.sql.streaming.life_join import LifeJoinOperator
from streamhouse.sql.streaming.life_over import LifeOverOperator, LifeOverPlan
from streamhouse.sql.streaming.life_plan import LifePlan
from streamhouse.sql.streaming.lookup_join import LookupJoinOperator
from streamhouse.sql.streaming.lookup_plan import LookupPlan
from streamhouse.sql.streaming.operator import StepResult, WindowOperator
from streamhouse.sql.streaming.plan import topic_watermark
from streamhouse.storage import namespace as ns
from streamhouse.storage.clock import now_ms as _now
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.metadata.txn_reads import shared_reads
from streamhouse.storage.model import Checkpoint, JobInfo, SegmentInfo, TopicInfo

log = logging.getLogger(__name__)

_MIN_READ_ROWS = 10_000  # rows a partition may give a round, at least


def job_plan(job: JobInfo, topics: dict[str, TopicInfo]) -> ContinuousPlan:
    return plan_continuous(
        job.sql,
        lambda name: topic_schema(topics[name]),
        lambda name: topic_watermark(topics[name]),
        state_ttl_ms=parse_job_options(job.options, job.name).state_ttl_ms,
    )


class JobRunner:
    def __init__(self, host: JobHost, job: JobInfo, epoch: int) -> None:
        self.host = host
        self.job = job
        self.epoch = epoch
        self.options = parse_job_options(job.options, job.name)
        # Committed source rows only (Kafka transactions), unless the job asked for all of them.
        committed = self.options.isolation == "read_committed"
        self._committed = shared_reads(host.metadata) if committed else None
        # A job reads slots: (source topic, partition) pairs, numbered. A one-topic job's slot
        # is its partition; a join's slots run over both topics' partitions. Offsets, reads,
        # idleness and watermarks are per slot.
        self.slots: list[tuple[TopicInfo, int]] = []
        self.offsets: dict[int, int] = {}
        self.seq = 0
        self.operator: WindowOperator | JoinOperator | IntervalJoinOperator | None = None
        # time.monotonic: a wall-clock step back (NTP) must not hold checkpoints until the clock
        # is past the last one again (a chaos clock-step stalled a job for the step's length).
        self.last_checkpoint_s = 0.0
        self._output: list[pa.Table] = []
        self._late: list[pa.Table] = []
        self._dirty = False  # anything to checkpoint (rows read, windows fired)
        self._state_key: str | None = None  # the committed snapshot, deleted once superseded
        # Source offsets passed over because retention removed them unread (jobs/source.py),
        # since the job was created: carried in every checkpoint's stats, shown by SHOW JOBS.
        self.retention_skipped = 0
        # Under auth a job reads and writes only while its creator may (jobs/rights.py).
        creator = self.options.creator
        self._rights = CreatorRights(host.metadata, creator) if creator and host.config.auth != "none" else None

    async def run(self) -> None:
        """Until cancelled (lease lost, job dropped, agent stopping) or fenced."""
        metadata = self.host.metadata
        # The job's org's topics by its names (storage/namespace.py): it reads nothing else.
        topics = ns.scoped(await metadata.list_topics(), ns.org_of(self.job.name))
        plan = job_plan(self.job, topics)
        if isinstance(plan, JoinPlan | IntervalPlan):
            sources = [topics[topic] for topic in plan.topics]
            self.slots = [(info, p) for info in sources for p in range(info.partitions)]
            sides = tuple((i, p) for i, info in enumerate(sources) for p in range(info.partitions))
            if isinstance(plan, JoinPlan):
                self.operator = JoinOperator(plan, self.options.idle_timeout_ms, slots=sides)
            elif isinstance(plan, LifeOverPlan):  # before LifeAggPlan: a LifeOverPlan is one
                self.operator = LifeOverOperator(plan, self.options.idle_timeout_ms, slots=sides)
            elif isinstance(plan, LifeAggPlan):  # before LifePlan: a LifeAggPlan is one
                self.operator = LifeAggOperator(plan, self.options.idle_timeout_ms, slots=sides)
            elif isinstance(plan, LifePlan):  # before IntervalPlan: a LifePlan is one
                self.operator = LifeJoinOperator(plan, self.options.idle_timeout_ms, slots=sides)
            elif isinstance(plan, LookupPlan):  # before IntervalPlan: a LookupPlan is one
                self.operator = LookupJoinOperator(plan, self.options.idle_timeout_ms, slots=sides)
            else:
                self.operator = IntervalJoinOperator(plan, self.options.idle_timeout_ms, slots=sides)
        else:
            source = topics[plan.topic]
            self.slots = [(source, p) for p in range(source.partitions)]
            self.operator = WindowOperator(
                plan,
                self.options.idle_timeout_ms,
                partitions=tuple(range(source.partitions)),
                emit=self.options.emit,
            )
        await self._check_rights()
        checkpoint = await metadata.latest_checkpoint(self.job.name)
        if checkpoint is not None:
            self.seq = checkpoint.seq
            self._state_key = checkpoint.state_key
            self.retention_skipped = int(checkpoint.stats.get("retention_skipped", 0))
            if checkpoint.state_key:
                self.operator.restore(bytes(await self.host.store.get(checkpoint.state_key)))
        for slot, (info, p) in enumerate(self.slots):
            committed = checkpoint.source_offsets.get((info.name, p)) if checkpoint else None
            if committed is not None:
                self.offsets[slot] = committed
            elif self.options.start == "latest":
                self.offsets[slot] = await self.host.topics.end_offset(info.name, p)
            else:
                self.offsets[slot] = 0
        self.last_checkpoint_s = time.monotonic()
        while True:
            progressed = await self._step()
            # Results become visible at a checkpoint: with windows fired and waiting, one comes
            # sooner (a fifth of the interval), so closing a window is not a full interval late.
            elapsed = (time.monotonic() - self.last_checkpoint_s) * 1000
            interval = self.options.checkpoint_interval_ms
            due = elapsed >= interval or (bool(self._output or self._late) and elapsed >= interval // 5)
            if due and self._dirty:
                await self._checkpoint(topics)
            if not progressed:
                await asyncio.sleep(0.05)

    async def _step(self) -> bool:
        """One round: the next rows of every partition (of every source) are read first and handed to the
        operator together, which judges them against the watermark from before the round and
        moves it (and fires) once. Reading and firing partition by partition let the first
        partition read push the watermark past rows the others already held (issue 10)."""
        assert self.operator is not None
        topics = self.host.topics
        # A round holds every partition's rows at once, so `batch_rows` is shared among them
        # (at least 10 k each: a topic with many partitions still catches up in big steps).
        per_partition = max(_MIN_READ_ROWS, self.options.batch_rows // max(len(self.slots), 1))
        reads = await asyncio.gather(
            *(
                read_partition(topics, info, p, self.offsets[slot], per_partition, self._skipped, self._committed)
                for slot, (info, p) in enumerate(self.slots)
            )
        )
        batches = {slot: rows for slot, (rows, _) in enumerate(reads) if rows.num_rows}
        now = _now()
        # A partition that showed nothing may only look empty (records landing after its read,
        # or held by another agent's leader): asked after every read, one that may have
        # records not read yet is not idle, so the idle rule cannot move the watermark past
        # rows already in its log. Only partitions about to count as idle are asked, and only
        # when that could move the watermark (an idle job asks nothing every 50 ms).
        pending = []
        idle = [p for p in self.operator.idle_partitions(now) if p not in batches and p in self.offsets]
        if idle and (batches or self.operator.watermark_would_advance(now)):
            for slot in idle:
                info, p = self.slots[slot]
                quiet = self.operator.quiet_ms(slot, now)
                if await may_have_unread(self.host, info, p, self.offsets[slot], quiet, self.options.idle_timeout_ms):
                    pending.append(slot)
        self._collect(self.operator.process_round(batches, now, pending))
        for slot, (_, next_offset) in enumerate(reads):
            # Also without rows: a read may step over a compacted gap or past what retention
            # removed (jobs/source.py), and must not do it again every round.
            self.offsets[slot] = next_offset
        if batches:
            self._dirty = True
        return bool(batches)

    def _skipped(self, count: int) -> None:
        self.retention_skipped += count
        self._dirty = True  # the moved offsets are worth a checkpoint even without rows

    async def _commit(self, checkpoint: Checkpoint) -> None:
        """Commit a checkpoint; an unknown outcome is settled by reading it back (_settle)."""
        metadata = self.host.metadata
        try:
            await metadata.commit_checkpoint(checkpoint, self.host.config.holder, self.epoch)
        except Exception as exc:
            await _settle(metadata, checkpoint, exc)

    def _collect(self, result: StepResult) -> None:
        if result.fired:
            self._dirty = True
        if result.output.num_rows:
            self._output.append(result.output)
        if result.late.num_rows:
            self._late.append(result.late)

    async def _check_rights(self) -> None:
        """AuthorizationError (the runner stops, nothing of the round committed) when the job's
        creator may no longer read a source or write the output or dead-letter topic."""
        if self._rights is None:
            return
        dead_letter = self.options.dead_letter
        writes = [self.job.output_topic] + ([ns.inner(dead_letter, ns.org_of(self.job.name))] if dead_letter else [])
        await self._rights.require(self.job.name, sorted({info.name for info, _ in self.slots}), writes)

    async def _checkpoint(self, topics: dict[str, TopicInfo]) -> None:
        assert self.operator is not None
        await self._check_rights()
        metadata, store = self.host.metadata, self.host.store
        seq = self.seq + 1
        segments: list[SegmentInfo] = []
        dead_letter = self.options.dead_letter
        if dead_letter is not None:
            dead_letter = ns.inner(dead_letter, ns.org_of(self.job.name))
        for name, pieces in ((self.job.output_topic, self._output), (dead_letter, self._late)):
            if not pieces or name is None:
                continue
            info = topics.get(name) or await metadata.get_topic(name)
            rows = pa.concat_tables(pieces, promote_options="default")
            base = await metadata.get_end_offset(name, 0)
            encoded, segment = encode_output(rows, info, 0, base, self.epoch, seq)
            await store.put(segment.object_key, encoded.data, if_absent=False)
            segments.append(segment)
        state_key = f"jobs/{self.job.name}/state-{seq:010d}-e{self.epoch}"
        await store.put(state_key, self.operator.snapshot(), if_absent=False)
        stats = self.operator.stats()
        await self._commit(
            Checkpoint(
                job=self.job.name,
                seq=seq,
                state_key=state_key,
                source_offsets={(self.slots[slot][0].name, self.slots[slot][1]): o for slot, o in self.offsets.items()},
                output_segments=tuple(segments),
                stats={
                    "rows_in": stats.rows_in,
                    "rows_out": stats.rows_out,
                    "late_rows": stats.late_rows,
                    "watermark": stats.watermark if stats.watermark is not None else -1,
                    "open_windows": stats.open_windows,
                    "state_rows": stats.state_rows,
                    "retention_skipped": self.retention_skipped,
                },
            ),
        )
        self.seq = seq
        self._output.clear()
        self._late.clear()
        self._dirty = False
        self.last_checkpoint_s = time.monotonic()
        if self._state_key is not None:
            await store.delete(self._state_key)  # superseded: a restart reads the new one
        self._state_key = state_key


async def _settle(metadata: MetadataStore, checkpoint: Checkpoint, exc: Exception) -> None:
    """After a failed commit_checkpoint: return if the checkpoint is committed anyway (its reply
    was lost), else raise `exc`. Without this a lost reply fails the runner, which restarts
    and re-reads the state of a checkpoint it did make."""
    try:
        latest = await metadata.latest_checkpoint(checkpoint.job)
    except Exception:
        raise exc from None
    if latest is None or latest.seq != checkpoint.seq or latest.state_key != checkpoint.state_key:
        raise exc
    log.warning("checkpoint %d of job %s was committed although it reported %s", checkpoint.seq, checkpoint.job, exc)
