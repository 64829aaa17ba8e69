"""The partitions an agent leads: leases taken on demand and renewed (engine/agent/leases.py),
one PartitionWriter per led partition, the flush loop (size/age rolls), acks=durable group commit and the reaction
to fencing. Transport-free: the gRPC server and the embedded SDK both drive this class."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import pyarrow as pa

from streamhouse.agent.config import AgentConfig, leader_address
from streamhouse.agent.durable_linger import Led
from streamhouse.agent.durable_rounds import DurableRounds, Key
from streamhouse.agent.failures import RoundLog
from streamhouse.agent.flush_health import FlushHealth
from streamhouse.agent.forward import Forwarder, cannot_forward
from streamhouse.agent.leases import HeldLeases, Leases
from streamhouse.agent.wal_takeover import WalTakeover
from streamhouse.api.types import Acks
from streamhouse.storage.errors import (
    FencedError,
    LeaseHeldError,
    NotLeaderError,
    PartitionNotFoundError,
    StreamHouseError,
    TopicNotFoundError,
)
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.model import SegmentInfo, TopicInfo, partition_resource
from streamhouse.storage.object_store import ObjectStore, open_object_store
from streamhouse.storage.partition.reader import PartitionReader
from streamhouse.storage.partition.writer import PartitionWriter, WriterConfig
from streamhouse.storage.tasks import cancel_and_wait
from streamhouse.storage.wal.format import WalEntry
from streamhouse.storage.wal.log import WriteAheadLog

log = logging.getLogger(__name__)


class PartitionManager:
    def __init__(
        self,
        config: AgentConfig,
        metadata: MetadataStore,
        store: ObjectStore,
        wal: WriteAheadLog,
        replayed: list[WalEntry],
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.store = store
        self.wal = wal
        self.reader = PartitionReader(metadata, store)
        # Acknowledged WAL records in no committed segment, until a writer or a live leader
        # has them (issue 20).
        self.takeover = WalTakeover(metadata, wal, replayed)
        self._led: dict[Key, Led] = {}
        # The lease of every led partition, epoch = its writer's epoch; a lost one fences it.
        self.leases: HeldLeases[Key] = HeldLeases(
            Leases(metadata, holder=config.holder, agent_id=config.agent_id, ttl_ms=config.lease_ttl_ms),
            self._lease_lost,
        )
        self.flush_health = FlushHealth()  # backoff, logging and readiness of failing flushes
        self.durable = DurableRounds(config, self._led, self._flush, self.flush_health)  # acks=durable
        self._acquiring: dict[Key, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Hooks for the service layer: long-poll wake-ups and metrics. Plain callbacks, so this
        # class stays transport- and metrics-free.
        self.on_append: Callable[[str, int], None] = lambda topic, partition: None
        self.on_segment: Callable[[SegmentInfo], None] = lambda segment: None
        self._writer_config = WriterConfig(
            roll_bytes=config.roll_bytes, roll_age_ms=config.roll_age_ms, max_buffer_bytes=config.max_buffer_bytes
        )

    @classmethod
    async def start(cls, config: AgentConfig, forward: Forwarder | None = None) -> PartitionManager:
        """`forward`: how held WAL records reach another agent's leader (engine/agent/forward.py);
        the node passes the network one, a manager without it keeps such records waiting."""
        metadata = await open_metadata_store(config.resolved_metadata_url)
        store = open_object_store(config.resolved_object_store_url, s3_endpoint=config.s3_endpoint or None)
        wal = await WriteAheadLog.open(config.resolved_wal_dir, fsync=config.fsync)  # type: ignore[arg-type]
        # Only after the WAL's lock is ours: the stored id belongs to whoever holds it.
        config = config.with_agent_id()
        replay = await wal.replay()
        manager = cls(config, metadata, store, wal, list(replay.entries))
        # The first take-over round, before the agent listens, leads what it can but hands
        # nothing to another leader: a hand-over is an acks=durable produce (over a minute under
        # an S3 outage) and a supervisor kills an agent that slow to listen. The recovery loop
        # below hands them over in the background from its first round on.
        manager.takeover.forward = _forward_after_start
        try:
            await manager._release_covered(replay.end_offsets)
        except StreamHouseError as exc:
            # A metadata hiccup must not stop the agent: what is still pending stays in the WAL
            # and the recovery loop takes it over (at worst leading an idle partition once).
            log.warning("sorting the replayed WAL entries failed (the recovery loop retries): %s", exc)
        await manager._recover_replayed(replay.end_offsets)
        manager.takeover.forward = forward or cannot_forward
        manager._tasks = [
            asyncio.create_task(manager._loop(config.flush_check_ms, manager._flush_due), name="flush"),
            asyncio.create_task(manager._loop(config.renew_interval_ms, manager._renew_all), name="renew"),
            asyncio.create_task(manager._loop(config.renew_interval_ms, manager._recover_pending), name="recover"),
        ]
        return manager

    async def _release_covered(self, replay_ends: Mapping[tuple[int, int], int]) -> None:
        """Tell the WAL which replayed entries need nothing more, so files of partitions nobody
        writes again are still released; the others are kept until taken over."""
        await self.takeover.release_settled(replay_ends)

    async def _recover_replayed(self, replay_ends: Mapping[tuple[int, int], int]) -> None:
        """Take over at once every partition whose WAL entries need it (see WalTakeover).

        Those records were acknowledged before a crash: readers must see them right after the
        restart and the next roll must commit them, not only once a producer happens to write
        to the partition again. A partition another live agent leads gets them produced to
        that leader; either way failures are retried every renew interval (_recover_pending)."""
        del replay_ends  # the takeover's pending entries say which partitions need it
        await self._recover_pending()

    async def _recover_pending(self) -> None:
        await self.takeover.round(self.writer, self.leading)

    def watch_recovery(self, callback: Callable[[str, int, int], None]) -> None:
        """`callback(topic, recovered, dropped)` for WAL records taken over or dropped."""
        self.takeover.watch(callback)

    # -- leadership -----------------------------------------------------------------------------
    async def writer(self, topic: TopicInfo, partition: int) -> PartitionWriter:
        """The writer of a partition this agent leads, taking the lease if it is free.
        NotLeaderError (with the leader's address) if another live agent holds it."""
        if not 0 <= partition < topic.partitions:
            raise PartitionNotFoundError(topic.name, partition, topic.partitions)
        key = (topic.name, partition)
        led = self._led.get(key)
        if led is not None and not led.writer.fenced and led.writer.topic.topic_id == topic.topic_id:
            return led.writer
        async with self._acquiring.setdefault(key, asyncio.Lock()):
            led = self._led.get(key)
            if led is not None and not led.writer.fenced and led.writer.topic.topic_id == topic.topic_id:
                return led.writer
            resource = partition_resource(topic.name, partition)
            try:
                # A previous incarnation of this agent (same WAL, hence same agent id; its address
                # may differ, e.g. after a restart on port 0) or an earlier writer of this one may
                # have uploaded a segment it never committed: a fresh epoch gives the next upload
                # its own key.
                lease = await self.leases.leases.acquire(resource, take_back="new-epoch")
            except LeaseHeldError as exc:
                raise NotLeaderError(resource, leader_address(exc.holder)) from None
            wal_key = (topic.topic_id, partition)
            mine = await self.takeover.entries_for(wal_key)
            writer = await PartitionWriter.recover(
                topic,
                partition,
                holder=self.config.holder,
                epoch=lease.epoch,
                metadata=self.metadata,
                store=self.store,
                wal=self.wal,
                replayed=mine,
                config=self._writer_config,
            )
            self.takeover.taken_over(topic.name, wal_key, writer)
            self.leases.add(key, lease)
            self._led[key] = Led(writer)
            log.info("leading %s/%d at epoch %d from offset %d", topic.name, partition, lease.epoch, writer.next_offset)
            return writer

    def led_writers(self) -> list[PartitionWriter]:
        return [led.writer for led in self._led.values() if not led.writer.fenced]

    def leading(self, topic: str, partition: int) -> PartitionWriter | None:
        led = self._led.get((topic, partition))
        return None if led is None or led.writer.fenced else led.writer

    # -- produce and read -------------------------------------------------------------------------
    async def produce(
        self,
        topic: TopicInfo,
        partition: int,
        batch: pa.RecordBatch,
        acks: Acks = "leader",
        payload: bytes | None = None,
    ) -> int:
        """Append a batch (`payload`: its framed bytes, see PartitionWriter.append); returns its
        base offset once the ack mode is satisfied (-1 for acks=none: acknowledged on receipt)."""
        base = await self.append(topic, partition, batch, acks, payload)
        await self.acknowledge(topic.name, partition, base + batch.num_rows, acks)
        return base

    async def append(
        self,
        topic: TopicInfo,
        partition: int,
        batch: pa.RecordBatch,
        acks: Acks,
        payload: bytes | None = None,
        decoded: pa.Table | None = None,
    ) -> int:
        """The first half of produce: offsets assigned, WAL written, buffered. Callers that
        pipeline (ProduceStream) append in arrival order and acknowledge concurrently.
        `decoded`: the batch's declared columns from the produce-time check, if any."""
        writer = await self.writer(topic, partition)
        # A leader that may have been paused past its lease must not even write: its WAL entry
        # would be recovered later (issue 20) although the produce is refused.
        await self._confirm_lease((topic.name, partition))
        if acks == "none":
            self._spawn(self._append(writer, batch, payload, decoded))
            return -1
        # acks=durable answers after the segment commit: its WAL entry would protect nothing.
        return await self._append(writer, batch, payload, decoded, logged=acks != "durable")

    async def acknowledge(self, topic: str, partition: int, end: int, acks: Acks) -> None:
        """The second half: wait until records before `end` are as safe as `acks` promises."""
        if acks == "durable":
            await self.durable.wait((topic, partition), end)
        elif acks == "leader":
            await self._confirm_lease((topic, partition))

    async def _append(
        self,
        writer: PartitionWriter,
        batch: pa.RecordBatch,
        payload: bytes | None,
        decoded: pa.Table | None = None,
        *,
        logged: bool = True,
    ) -> int:
        base = await writer.append(batch, payload, decoded, logged=logged)
        self.on_append(writer.topic.name, writer.partition)
        return base

    async def _confirm_lease(self, key: Key) -> None:
        """Before acknowledging: if the lease was last confirmed longer ago than a safe share
        of its TTL (this process may have been paused), renew it now. A stale leader thus
        fails its pending produces instead of acknowledging records nobody will commit."""
        led = self._led.get(key)
        if led is None:
            raise FencedError(f"{key[0]}/{key[1]}: leadership lost before the acknowledgement")
        if not await self.leases.confirm(key) or self._led.get(key) is not led:
            raise FencedError(f"{key[0]}/{key[1]}: lease lost while the produce was in flight")

    def make_durable(self, topic: str, partition: int) -> None:
        """A reader waits at the durable end while this leader holds acknowledged records past
        it (the high watermark, docs/DESIGN.md §6): start a durable round for them now, as an
        acks=durable produce would, instead of leaving them to the size/age roll. The reader
        is woken by the commit (on_segment); nobody awaits the round here."""
        self.durable.make_durable((topic, partition))

    async def read(self, topic: str, partition: int, offset: int, max_records: int) -> pa.Table:
        """Up to `max_records` records from `offset`, never past the durable end: what a reader
        is served is in a committed segment, so no takeover can change it (see end_offsets)."""
        writer = self.leading(topic, partition)
        end = writer.durable_end if writer is not None else None  # a follower sees only segments anyway
        return await self.reader.read(topic, partition, offset, max_records=max_records, end_offset=end, writer=writer)

    async def end_offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(durable end, acknowledged end). The durable end is the high watermark: one past the
        last record in a committed segment, the end of everything readers are served. The
        acknowledged end is one past the last record this leader acknowledged; the records in
        between are only in its buffer and WAL, and a leader killed or paused past its lease
        leaves them behind: the next leader goes on from the durable end and gives those
        offsets to other records (acks=leader ones come back later at new offsets). Without
        the leadership here both are the committed end."""
        writer = self.leading(topic, partition)
        if writer is not None:
            return writer.durable_end, writer.next_offset
        end = await self.metadata.get_end_offset(topic, partition)
        return end, end

    async def end_offset(self, topic: str, partition: int) -> int:
        """The high watermark: one past the last record in a committed segment (end_offsets)."""
        return (await self.end_offsets(topic, partition))[0]

    async def acked_end(self, topic: str, partition: int) -> int:
        """One past the last acknowledged record (the leader's view when this agent leads)."""
        return (await self.end_offsets(topic, partition))[1]

    # -- background loops -----------------------------------------------------------------------
    async def _loop(self, every_ms: int, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        said = RoundLog(f"background step {step.__name__}", log)
        while True:
            await asyncio.sleep(every_ms / 1000)
            try:
                await step()
            except Exception as exc:  # a loop must survive one bad round (S3 down, a fenced writer)
                said.failed(exc)
            else:
                said.succeeded()

    async def _flush_due(self) -> None:
        """Roll writers that are big or old enough (durable acks roll on their own schedule).
        Partitions roll side by side: encoding and uploading run in the IO pool."""
        due = []
        for key, led in list(self._led.items()):
            if led.writer.fenced:
                self._drop(key, FencedError(f"{key[0]}/{key[1]} is fenced"))
            elif led.writer.should_roll() and self.flush_health.wait_s(key) == 0:
                due.append(self._flush(key, led))
        await asyncio.gather(*due)

    async def _flush(self, key: Key, led: Led, staged: Callable[[], None] | None = None) -> None:
        try:
            await led.writer.flush(committed=lambda segment: self._committed(key, led, segment), staged=staged)
        except FencedError as exc:
            self._drop(key, exc)
            return
        except Exception as exc:
            # Encode, upload or commit failed: the buffer and the WAL keep the records, waiters
            # keep waiting and produce gets backpressure once the buffer is full. The next
            # attempt waits out a backoff; only deleting the topic ends the retries.
            self.flush_health.failed(key, exc)
            await self._forget_if_deleted(key, led)
            return
        self.flush_health.succeeded(key)
        self.durable.wake(led)

    def _committed(self, key: Key, led: Led, segment: SegmentInfo) -> None:
        """A segment of `led` is committed: its durable waiters are acknowledged now, while the
        writer still releases the WAL entries it covers (PartitionWriter.flush)."""
        self.flush_health.succeeded(key)
        self.on_segment(segment)
        self.durable.wake(led)

    def _drop(self, key: Key, exc: Exception, *, quiet: bool = False) -> None:
        """A fenced partition: fail its durable waiters (never acknowledge them) and forget it."""
        led = self._led.pop(key, None)
        if led is None:
            return
        self.leases.forget(key)
        self.flush_health.forget(key)
        for _, done in led.durable_waiters:
            if not done.done():
                done.set_exception(exc)
        if led.durable_task is not None and led.durable_task is not asyncio.current_task():
            led.durable_task.cancel()
        log.log(logging.DEBUG if quiet else logging.WARNING, "lost leadership of %s/%d: %s", key[0], key[1], exc)

    async def _forget_if_deleted(self, key: Key, led: Led) -> None:
        """After a failed flush: if the topic is gone (or re-created under the same name), stop
        retrying a partition nobody can read."""
        try:
            current: TopicInfo | None = await self.metadata.get_topic(key[0])
        except TopicNotFoundError:
            current = None
        except StreamHouseError:
            return  # cannot tell now; the next failure asks again
        if current is None or current.topic_id != led.writer.topic.topic_id:
            await self.forget_topic(led.writer.topic)

    async def forget_topic(self, topic: TopicInfo) -> None:
        """The topic was deleted: stop leading its partitions. Their unflushed records and WAL
        entries go with it (nothing can read them any more) and durable waiters fail."""
        # Writers led before and after ALTER TOPIC … ADD PARTITIONS hold different partition
        # counts of one topic: release every partition either knows, or WAL files would stay.
        partitions = set(range(topic.partitions)) | {p for name, p in self._led if name == topic.name}
        for key, led in list(self._led.items()):
            if key[0] != topic.name or led.writer.topic.topic_id != topic.topic_id:
                continue
            await led.writer.fence(f"topic {topic.name!r} was deleted")
            self._drop(key, TopicNotFoundError(topic.name), quiet=True)
            log.warning("topic %s was deleted: stopped leading partition %d", topic.name, key[1])
        await self.wal.release({(topic.topic_id, p): 2**62 for p in sorted(partitions)})

    async def _renew_all(self) -> None:
        await self.leases.renew_all()

    async def _lease_lost(self, key: Key, exc: FencedError) -> None:
        led = self._led.get(key)
        if led is not None:
            await led.writer.fence(str(exc))
        self._drop(key, exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run an acks=none append: nobody awaits it, so its failure is logged here."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("acks=none produce failed: %s", task.exception())

    # -- shutdown -------------------------------------------------------------------------------
    async def close(self, *, flush: bool = True) -> None:
        """Graceful shutdown: flush every led partition, release its lease, close stores."""
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(self._tasks)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for key, led in list(self._led.items()):
            if flush:
                await self._flush(key, led)
            if not led.writer.fenced:
                await self.leases.release(key)
            self._drop(key, FencedError("agent shut down"), quiet=True)
        await self.wal.close()
        await self.store.close()
        await self.metadata.close()


async def _forward_after_start(address: str, topic: str, partition: int, batch: pa.RecordBatch) -> int:
    """The forwarder of the take-over round at start (PartitionManager.start): the records wait."""
    raise StreamHouseError(
        f"{topic}/{partition}: {batch.num_rows} WAL records go to the leader at {address} once this agent is up"
    )
